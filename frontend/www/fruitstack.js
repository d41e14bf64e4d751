// The app's only script, a file (not inline) so that the Content-Security-Policy can say
// script-src 'self' (frontend/middleware.py).

// Enables or disables a permission gate and shows its reason (frontend/modules/auth.py). The app
// is rendered by the server after sign-in, and a gate's message can arrive before its fieldset is
// in the page: each gate's last state is kept and applied again whenever new controls are bound.
var gates = {};
function applyGate(message) {
  var gate = document.getElementById(message.id);
  if (gate) { gate.disabled = !message.allowed; }
  var reason = document.getElementById(message.id + "-reason");
  if (reason) { reason.textContent = message.allowed ? "" : message.reason; }
}
Shiny.addCustomMessageHandler("fruitstack-gate", function (message) {
  gates[message.id] = message;
  applyGate(message);
});
jQuery(document).on("shiny:bound", function () {
  Object.keys(gates).forEach(function (id) { applyGate(gates[id]); });
});

// The session ended (signed out, or the sign-in expired): load a fresh sign-in page. replace(), so
// Back does not return to the ended page; the code only selects one of the app's own sentences.
Shiny.addCustomMessageHandler("fruitstack-leave", function (message) {
  window.location.replace(window.location.pathname + "?signed_out=" + encodeURIComponent(message.code));
});

// The sign-in form is rendered by the server: put the cursor in its first field once it is there,
// and let Enter in either field sign in. Blurring first sends the field's value (inputs update on
// blur), so the click never reaches the server before the value it is about.
jQuery(document).on("shiny:bound", function (event) {
  if (event.target.id === "auth-username") { event.target.focus(); }
});
document.addEventListener("keydown", function (event) {
  if (event.key !== "Enter" || !event.target.closest || !event.target.closest("#auth-form")) { return; }
  var button = document.getElementById("auth-sign_in");
  if (event.target.tagName === "INPUT" && button && !button.disabled) {
    event.preventDefault();
    event.target.blur();
    button.click();
  }
});
