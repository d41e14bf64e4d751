"""One Shiny module per feature: each file holds a `<feature>_ui` / `<feature>_server` pair."""
