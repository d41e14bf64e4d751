"""The generated reference pages of the documentation site: every setting, and the gRPC API.

An mkdocs hook (mkdocs.yml `hooks:`): at every build it adds two pages that exist only in the
built site, never in git, so they cannot go stale:

- reference/settings.md, from the typed settings classes themselves (pydantic's fields: the
  environment variable, type, default, allowed range and description of each);
- reference/api.md, from the comments in proto/fruitstack/v1/*.proto, read with grpcio-tools'
  protoc (`--include_source_info`) from the descriptor set it writes.

`python -m scripts.docs_reference settings|api` prints one of them, to read it without a build.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"

# The settings object of each service: (title, module, class, who reads it).
SETTINGS = (
    ("Backend", "backend.config", "Settings", "`python -m backend` (and `python -m backend.auth`)"),
    (
        "Model service",
        "fruitstack_model.settings",
        "ServiceSettings",
        "`bentoml serve` from `bento/` (`bento/service.py`)",
    ),
    ("Retraining runner", "pipelines.settings", "Settings", "`python -m pipelines` and its flow runs"),
    ("Frontend", "frontend.config", "Settings", "`python -m frontend`"),
)


# ----------------------------------------------------------------------------------------- settings


def _import_paths() -> None:
    # The repository root (backend, frontend, pipelines) and bento/ (fruitstack_model), as the
    # services' own entry points and the tests set them.
    for path in (ROOT, ROOT / "bento"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def _cell(text: str) -> str:
    """Text fit for one cell of a Markdown table."""
    return " ".join(text.split()).replace("|", "\\|")


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    text = repr(annotation)
    for prefix in ("typing.", "pydantic.types.", "pydantic.networks.", "pathlib._local.", "pathlib."):
        text = text.replace(prefix, "")
    return text


def _constraints(field: Any) -> str:
    bounds = []
    for item in field.metadata:
        for attr, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "length >=")):
            value = getattr(item, attr, None)
            if value is not None:
                bounds.append(f"{word} {value}")
    return ", ".join(bounds)


def _default(field: Any) -> str:
    from pydantic import SecretStr
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if isinstance(value, SecretStr):
        # A secret's default is never shown; an empty one means "unset".
        return "empty" if not value.get_secret_value() else "(a placeholder)"
    if value is None:
        return "unset"
    if value == "":
        return "empty"
    return f"`{value}`"


def _env_names(settings_class: Any, name: str, field: Any) -> list[str]:
    from pydantic import AliasChoices

    alias = field.validation_alias
    if isinstance(alias, str):
        return [alias.upper()]
    if isinstance(alias, AliasChoices):
        return [str(choice).upper() for choice in alias.choices]
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    return [(prefix + name).upper()]


class _Source:
    """What a settings class's source says of each field: its annotation as written, and its comment."""

    def __init__(self, settings_class: type) -> None:
        lines, _ = inspect.getsourcelines(settings_class)
        source = textwrap.dedent("".join(lines))
        source_lines = source.splitlines()
        class_def = ast.parse(source).body[0]
        assert isinstance(class_def, ast.ClassDef)
        self.annotations: dict[str, str] = {}
        self.comments: dict[str, str] = {}
        previous_comment = ""
        for statement in class_def.body:
            if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
                continue
            name = statement.target.id
            # With `from __future__ import annotations` this is the type as the code spells it
            # (`FilePath | None`), not pydantic's expansion of it.
            self.annotations[name] = ast.unparse(statement.annotation)
            above: list[str] = []
            index = statement.lineno - 2
            while index >= 0 and source_lines[index].strip().startswith("#"):
                above.insert(0, source_lines[index].strip().lstrip("#").strip())
                index -= 1
            if above:
                previous_comment = " ".join(above)
                self.comments[name] = previous_comment
            elif previous_comment and not _has_description(statement):
                # A comment above a group of fields (seed and holdout, retries and retry_delay_s)
                # speaks for each of them.
                self.comments[name] = previous_comment
            else:
                previous_comment = ""


def _has_description(statement: ast.AnnAssign) -> bool:
    value = statement.value
    return isinstance(value, ast.Call) and any(k.arg == "description" for k in value.keywords)


def settings_page() -> str:
    """Every setting of every service, one table per settings class.

    A field documents itself with `description=`, or with the comment above it in the class; a
    field that shares another service's variable (MONGODB_URI, ...) may take that one's. A field
    with none of them fails the build: every setting is documented.
    """
    _import_paths()
    classes = [
        (title, module_name, class_name, who, getattr(importlib.import_module(module_name), class_name))
        for title, module_name, class_name, who in SETTINGS
    ]
    described: dict[str, tuple[str, str]] = {}
    for title, _, _, _, settings_class in classes:
        source = _Source(settings_class)
        for name, field in settings_class.model_fields.items():
            if text := field.description or source.comments.get(name, ""):
                for env in _env_names(settings_class, name, field):
                    described.setdefault(env, (title, text))
    out = [
        "# Settings reference",
        "",
        "Generated at every build from the typed settings classes themselves, so it is what the code"
        " reads. Each service reads its environment and a `.env` file in its working directory; the"
        " prose about them is in [Configuration](../configuration.md).",
        "",
    ]
    undocumented = []
    for title, module_name, class_name, who, settings_class in classes:
        source = _Source(settings_class)
        out += [
            f"## {title}",
            "",
            f"`{module_name}.{class_name}`, read by {who}.",
            "",
            "| variable | type | default | description |",
            "| --- | --- | --- | --- |",
        ]
        for name, field in settings_class.model_fields.items():
            envs = _env_names(settings_class, name, field)
            kind = f"`{_cell(source.annotations.get(name) or _type_name(field.annotation))}`"
            if bounds := _constraints(field):
                kind += f" ({bounds})"
            description = field.description or source.comments.get(name, "")
            if not description:
                shared = [described[env] for env in envs if env in described and described[env][0] != title]
                if shared:
                    description = f"As for the {shared[0][0].lower()}: {shared[0][1]}"
                else:
                    undocumented.append(f"{module_name}.{class_name}.{name}")
            names = ", ".join(f"`{env}`" for env in envs)
            out.append(f"| {names} | {kind} | {_cell(_default(field))} | {_cell(description)} |")
        out.append("")
    if undocumented:
        raise ValueError(
            f"settings without a description: {', '.join(undocumented)}; give each a Field(description=...)"
        )
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- API

# FileDescriptorProto field numbers (descriptor.proto), as source_code_info paths name them.
_MESSAGE, _ENUM, _SERVICE = 4, 5, 6
_FIELD, _NESTED, _NESTED_ENUM, _ENUM_VALUE, _METHOD = 2, 3, 4, 2, 2


def _descriptor_set() -> Any:
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    files = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.glob("fruitstack/**/*.proto"))
    well_known = resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "api.binpb"
        code = protoc.main(
            [
                "protoc",
                f"--proto_path={PROTO_DIR}",
                f"--proto_path={well_known}",
                "--include_source_info",
                f"--descriptor_set_out={out}",
                *files,
            ]
        )
        if code != 0:
            raise RuntimeError(f"protoc failed ({code}) on {', '.join(files)}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _comment(comments: dict[tuple[int, ...], str], path: tuple[int, ...]) -> str:
    return comments.get(path, "")


def _anchor(full_name: str) -> str:
    return "type-" + full_name.lstrip(".").replace(".", "-").lower()


def _type_link(type_name: str, known: set[str]) -> str:
    name = type_name.lstrip(".")
    short = name.removeprefix("fruitstack.v1.")
    return f"[`{short}`](#{_anchor(name)})" if name in known else f"`{name}`"


def _field_type(field: Any, known: set[str], maps: dict[str, Any]) -> str:
    from google.protobuf import descriptor_pb2

    fd = descriptor_pb2.FieldDescriptorProto
    if field.type in (fd.TYPE_MESSAGE, fd.TYPE_ENUM):
        name = field.type_name.lstrip(".")
        if name in maps:
            key, value = maps[name].field
            return f"map<{_field_type(key, known, maps)}, {_field_type(value, known, maps)}>"
        text = _type_link(field.type_name, known)
    else:
        text = f"`{fd.Type.Name(field.type).removeprefix('TYPE_').lower()}`"
    if field.label == fd.LABEL_REPEATED:
        text = f"repeated {text}"
    if field.proto3_optional:
        text = f"optional {text}"
    return text


def _walk_messages(
    messages: Any, prefix: str, path: tuple[int, ...]
) -> Iterator[tuple[str, Any, tuple[int, ...]]]:
    for index, message in enumerate(messages):
        name = f"{prefix}.{message.name}"
        here = (*path, index)
        yield name, message, here
        yield from _walk_messages(message.nested_type, name, (*here, _NESTED))


def api_page() -> str:
    """Every service, method, message and enum of fruitstack.v1, with the comments of the .proto files."""
    descriptor_set = _descriptor_set()
    known: set[str] = set()
    maps: dict[str, Any] = {}
    for file in descriptor_set.file:
        for name, message, _ in _walk_messages(file.message_type, file.package, (_MESSAGE,)):
            if message.options.map_entry:
                maps[name] = message
            else:
                known.add(name)
        for enum in file.enum_type:
            known.add(f"{file.package}.{enum.name}")
        for name, message, _ in _walk_messages(file.message_type, file.package, (_MESSAGE,)):
            for enum in message.enum_type:
                known.add(f"{name}.{enum.name}")

    out = [
        "# gRPC API reference",
        "",
        "Generated at every build from `proto/fruitstack/v1/*.proto`: the comments are the .proto"
        " files' own (protoc's source info), so this page says what the contract says. Who may call"
        " each method is in [the access policy](../auth.md); `grpcurl` examples in"
        " [Trying the API with grpcurl](../grpcurl.md).",
        "",
    ]
    for file in descriptor_set.file:
        comments = {
            tuple(location.path): textwrap.dedent(location.leading_comments).strip()
            + (
                (" " if location.leading_comments else "")
                + textwrap.dedent(location.trailing_comments).strip()
                if location.trailing_comments
                else ""
            )
            for location in file.source_code_info.location
        }
        out += [f"## `{file.name}`", ""]
        for s_index, service in enumerate(file.service):
            full = f"{file.package}.{service.name}"
            out += [f"### {service.name} {{#{_anchor(full)}}}", ""]
            if text := _comment(comments, (_SERVICE, s_index)):
                out += [text, ""]
            out += ["| method | request | response | description |", "| --- | --- | --- | --- |"]
            for m_index, method in enumerate(service.method):
                request = ("stream " if method.client_streaming else "") + _type_link(
                    method.input_type, known
                )
                response = ("stream " if method.server_streaming else "") + _type_link(
                    method.output_type, known
                )
                text = _cell(_comment(comments, (_SERVICE, s_index, _METHOD, m_index)))
                out.append(f"| `{method.name}` | {request} | {response} | {text} |")
            out.append("")
        for name, message, path in _walk_messages(file.message_type, file.package, (_MESSAGE,)):
            if message.options.map_entry:
                continue
            short = name.removeprefix(f"{file.package}.")
            out += [f"### {short} {{#{_anchor(name)}}}", ""]
            if text := _comment(comments, path):
                out += [text, ""]
            if message.field:
                out += ["| field | number | type | description |", "| --- | ---: | --- | --- |"]
                for f_index, field in enumerate(message.field):
                    kind = _field_type(field, known, maps)
                    text = _cell(_comment(comments, (*path, _FIELD, f_index)))
                    out.append(f"| `{field.name}` | {field.number} | {kind} | {text} |")
                out.append("")
            for e_index, enum in enumerate(message.enum_type):
                out += _enum(
                    f"{name}.{enum.name}", file.package, enum, comments, (*path, _NESTED_ENUM, e_index)
                )
        for e_index, enum in enumerate(file.enum_type):
            out += _enum(f"{file.package}.{enum.name}", file.package, enum, comments, (_ENUM, e_index))
    return "\n".join(out)


def _enum(
    full: str, package: str, enum: Any, comments: dict[tuple[int, ...], str], path: tuple[int, ...]
) -> list[str]:
    out = [f"### {full.removeprefix(package + '.')} {{#{_anchor(full)}}}", ""]
    if text := _comment(comments, path):
        out += [text, ""]
    out += ["| value | number | description |", "| --- | ---: | --- |"]
    for v_index, value in enumerate(enum.value):
        text = _cell(_comment(comments, (*path, _ENUM_VALUE, v_index)))
        out.append(f"| `{value.name}` | {value.number} | {text} |")
    return [*out, ""]


# ------------------------------------------------------------------------------------- mkdocs hook

PAGES = {"reference/settings.md": settings_page, "reference/api.md": api_page}


def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages to the build (mkdocs 1.6 `File.generated`: in the site only)."""
    from mkdocs.structure.files import File

    for path, make in PAGES.items():
        files.append(File.generated(config, path, content=make()))
    return files


if __name__ == "__main__":
    pages = {"settings": settings_page, "api": api_page}
    if len(sys.argv) != 2 or sys.argv[1] not in pages:
        sys.exit(f"usage: python -m scripts.docs_reference {{{'|'.join(pages)}}}")
    print(pages[sys.argv[1]]())
