"""A built tiny world shipped inside the repository, loaded only after a SHA-256 check.

The tiny world's weights depend on the CPU that built them (`scope_lib.worlds.models`), so the
project commits one built world and every machine loads that one instead of rebuilding.

A shipped world folder (`worlds/<name>/`) holds:

- `teacher/`, `student/`: `save_pretrained` output, weights as `*.safetensors` only;
- `tokenizer/`: the tokenizer's `save_pretrained` output (json);
- `done.json`: the builder's record, copied unchanged from the cache folder;
- `build.json`: the build record written by `export_world`: `world_key` (the config hash that
  keys the cache), `config`, `build` (the builder's times and losses from done.json),
  `machine` (CPU model from /proc/cpuinfo, core count), `versions` (python, torch,
  transformers, tokenizers, safetensors, numpy), `files` (byte count of every other file, so
  a truncated file is reported as such) and whatever the builder passed as `build_record`,
  e.g. `accuracy`: `{model: {tier: fraction in [0, 1]}}`;
- `MANIFEST.sha256`: one line `<64 hex digits>  <relative path>` per file of the folder
  (build.json included, the manifest itself not), sorted by path: the output format of
  `sha256sum`, so `cd worlds/<name> && sha256sum -c MANIFEST.sha256` checks a world by hand.

Only safetensors weights and json/txt files up to `MAX_TEXT_BYTES` are shipped: a pickle
weight file (`.bin`, `.pt`, ...) can run code when loaded and is refused.

Hashing is cheap: `verify_world` on a 12.2 MB world took 0.021 s (0.044 s with a cold page
cache) on a 2-core Intel Xeon. `load_shipped_world` still hashes a folder once per process
and re-checks only when a file's size or mtime changes, or a file appears or disappears.

Public: `export_world`, `verify_world`, `load_shipped_world`, `compare_worlds`,
`format_comparison`, `WorldIntegrityError`, `REBUILD_COMMAND`, `MANIFEST_NAME`.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import typing
from importlib import metadata
from pathlib import Path

import torch
from safetensors.torch import load_file

from scope_lib.common.machine import cpu_model
from scope_lib.worlds import models
from scope_lib.worlds.code_build import CodeWorldConfig
from scope_lib.worlds.routes_build import RouteWorldConfig

MANIFEST_NAME = "MANIFEST.sha256"
BUILD_NAME = "build.json"
MODEL_NAMES = ("teacher", "student")
REQUIRED_PARTS = ("teacher", "student", "tokenizer", "done.json")
# `{name}` is the world folder's name (scope_lib.worlds.rebuild).
REBUILD_COMMAND = "python -m scope_lib.worlds.rebuild {name} --ship"
MAX_TEXT_BYTES = 16 * 2**20  # a real tokenizer.json is a few MB; the tiny world's is 8 KB
TEXT_SUFFIXES = (".json", ".txt")
WEIGHT_SUFFIX = ".safetensors"
# Weight formats that unpickle (run code) when loaded, or that a loader could pick up.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".npy", ".npz")
OTHER_WEIGHT_SUFFIXES = (".h5", ".msgpack", ".gguf", ".onnx")
_RESERVED_RECORD_KEYS = ("world_key", "config", "build", "machine", "versions", "files", "exported")
# sha256sum escapes unusual names with a backslash; names this simple never need it.
_SAFE_PATH = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


def _is_safe_path(name: str) -> bool:
    return bool(_SAFE_PATH.fullmatch(name)) and not {".", ".."} & set(name.split("/"))


class WorldIntegrityError(ValueError):
    """A shipped world's files do not match its manifest. `problems`: (relative path, what is wrong)."""

    def __init__(self, path: Path, problems: list[tuple[str, str]], rebuild_command: str):
        self.path, self.problems = path, problems
        lines = "\n".join(f"  {name}: {what}" for name, what in problems)
        rebuild = rebuild_command.format(name=path.name)
        super().__init__(f"shipped world {path} failed its hash check:\n{lines}\n"
                         f"Restore it from git (git checkout -- {path}) or rebuild it with: {rebuild}")


# --- export

def export_world(src: Path, dest: Path, *, build_record: dict | None = None, overwrite: bool = False) -> Path:
    """Copy the built world folder `src` to `dest` with build.json and MANIFEST.sha256; returns dest.

    `src` is a finished `models.build_tiny_world` cache folder (teacher/, student/, tokenizer/,
    done.json). Run it on the machine that built the world: build.json records this CPU.
    `build_record` adds fields to build.json (e.g. `accuracy`, stop targets); it may not set
    the fields export derives itself. An existing `dest` is replaced only with `overwrite`.
    """
    src, dest = Path(src), Path(dest)
    files = _shippable_files(src)
    done = json.loads((src / "done.json").read_text())
    if "config" not in done:
        raise ValueError(f"{src / 'done.json'}: expected the builder's record with a 'config' field")
    record = _build_record(done, build_record or {}, src)
    if dest.exists() and not overwrite:
        raise FileExistsError(f"dest {dest} exists: pass overwrite=True to replace it")

    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for name in files:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, tmp / name)
        record["files"] = {name: (tmp / name).stat().st_size for name in files}
        (tmp / BUILD_NAME).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        manifest = {name: _sha256(tmp / name) for name in sorted([*files, BUILD_NAME])}
        (tmp / MANIFEST_NAME).write_text("".join(f"{digest}  {name}\n" for name, digest in manifest.items()))
        verify_world(tmp)  # the copy is what was hashed
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    if dest.exists():  # overwrite: the old world moves aside only once the new one is complete
        old = dest.with_name(dest.name + f".old{os.getpid()}")
        dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(dest)
    _verified.pop(dest.resolve(), None)
    return dest


def _shippable_files(src: Path) -> list[str]:
    """Relative paths of every file under src, after refusing anything a world must not ship."""
    if not src.is_dir():
        raise ValueError(f"src {src}: expected a built world folder, found none")
    missing = [part for part in REQUIRED_PARTS if not (src / part).exists()]
    if missing:
        raise ValueError(f"src {src}: not a finished world folder, missing {', '.join(missing)}")
    names = []
    for path in sorted(src.rglob("*")):
        name = path.relative_to(src).as_posix()
        if path.is_symlink():
            raise ValueError(f"src {src}: {name} is a symbolic link; a shipped world holds plain files only")
        if path.is_dir():
            continue
        if name in (MANIFEST_NAME, BUILD_NAME):
            raise ValueError(f"src {src}: has a {name} already; export the builder's folder, not a shipped world")
        if not _is_safe_path(name):
            raise ValueError(f"src {src}: file name {name!r} has characters outside [A-Za-z0-9._-/]")
        suffix = path.suffix.lower()
        if suffix in PICKLE_SUFFIXES:
            raise ValueError(f"src {src}: {name} is a pickle weight file; a shipped world holds "
                             f"{WEIGHT_SUFFIX} weights only (save_pretrained(..., safe_serialization=True))")
        if suffix in TEXT_SUFFIXES and path.stat().st_size > MAX_TEXT_BYTES:
            raise ValueError(f"src {src}: {name} has {path.stat().st_size} bytes; "
                             f"json/txt files up to {MAX_TEXT_BYTES} bytes are shipped")
        if suffix != WEIGHT_SUFFIX and suffix not in TEXT_SUFFIXES:
            raise ValueError(f"src {src}: {name} is not a {WEIGHT_SUFFIX}, .json or .txt file")
        names.append(name)
    return names


def _build_record(done: dict, extra: dict, src: Path) -> dict:
    clashes = sorted(set(extra) & set(_RESERVED_RECORD_KEYS))
    if clashes:
        raise ValueError(f"build_record: {clashes} are written by export_world itself; use other keys")
    if "accuracy" in extra:
        _check_accuracy(extra["accuracy"])
    config = _config_from_dict(done["config"], src / "done.json", done.get("task"))
    record = {
        "world_key": config.key(),
        "config": done["config"],
        "build": {key: value for key, value in done.items() if key != "config"},
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()},
        "versions": _versions(),
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return {**record, **extra}


def _check_accuracy(accuracy) -> None:
    if not isinstance(accuracy, dict):
        raise ValueError(f"build_record['accuracy']: expected {{model: {{tier: fraction}}}}, got {accuracy!r}")
    for model, table in accuracy.items():
        if not isinstance(table, dict):
            raise ValueError(f"build_record['accuracy'][{model!r}]: expected {{tier: fraction}}, got {table!r}")
        for tier, value in table.items():
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"build_record['accuracy'][{model!r}][{tier!r}]: expected a fraction in [0, 1], got {value!r}")


def _versions() -> dict:
    versions = {"python": platform.python_version()}
    for package in ("torch", "transformers", "tokenizers", "safetensors", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _config_class(task: str | None):
    """The config dataclass of a world built for `task` (the chain task's when unnamed)."""
    if task == "routes":
        return RouteWorldConfig
    if task == "code":
        return CodeWorldConfig
    return models.WorldConfig


def _dataclass_from_dict(cls, data: dict):
    """`cls(**data)` with nested dataclass fields (also `X | None` ones) rebuilt from their dicts
    and json lists turned back into tuples."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        hint = hints.get(name)
        inner = [t for t in typing.get_args(hint) if t is not type(None)] if typing.get_args(hint) else [hint]
        if isinstance(value, dict) and len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
            value = _dataclass_from_dict(inner[0], value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _config_from_dict(data: dict, source: Path, task: str | None = None):
    """The world config whose `dataclasses.asdict` (read back from json) is `data`."""
    config_class = _config_class(task)
    try:
        return _dataclass_from_dict(config_class, data)
    except (TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{source}: its 'config' does not fit {config_class.__name__} ({error}); "
                         "it was built by another version of the world code") from None


# --- verification

def verify_world(path: Path, rebuild_command: str = REBUILD_COMMAND) -> None:
    """Check every file of the manifest exists with its size and hash, and no unlisted file is loadable.

    Raises WorldIntegrityError naming each bad file (missing / size differs / hash differs /
    not in the manifest), with `rebuild_command` (formatted with the folder name) as the fix.
    Unlisted files are refused inside teacher/, student/ and tokenizer/ (loaders read every
    file there) and anywhere if they are weights; a README beside them is allowed.
    """
    path = Path(path)
    manifest = _read_manifest(path, rebuild_command)
    problems = []
    sizes = {}
    if BUILD_NAME in manifest and (path / BUILD_NAME).is_file() and _sha256(path / BUILD_NAME) == manifest[BUILD_NAME]:
        sizes = json.loads((path / BUILD_NAME).read_text()).get("files", {})  # trusted: its hash matched
    for name, digest in manifest.items():
        file = path / name
        if not file.is_file():
            problems.append((name, "missing"))
        elif name in sizes and file.stat().st_size != sizes[name]:
            problems.append((name, f"size differs: {file.stat().st_size} bytes, expected {sizes[name]} (truncated or altered)"))
        elif _sha256(file) != digest:
            problems.append((name, "hash differs (altered)"))
    for file in sorted(path.rglob("*")):
        name = file.relative_to(path).as_posix()
        if file.is_dir() or name in manifest or name == MANIFEST_NAME:
            continue
        in_model_folder = name.split("/", 1)[0] in (*MODEL_NAMES, "tokenizer")
        if in_model_folder or _is_weight_file(file):
            problems.append((name, "not in the manifest (unlisted file a loader would read)"))
    if problems:
        raise WorldIntegrityError(path, problems, rebuild_command)


def _read_manifest(path: Path, rebuild_command: str) -> dict[str, str]:
    if not path.is_dir():
        raise WorldIntegrityError(path, [(".", "missing: no shipped world folder here")], rebuild_command)
    if not (path / MANIFEST_NAME).is_file():
        raise WorldIntegrityError(path, [(MANIFEST_NAME, "missing")], rebuild_command)
    manifest = {}
    for number, line in enumerate((path / MANIFEST_NAME).read_text().splitlines(), 1):
        match = re.fullmatch(r"([0-9a-f]{64}) [ *](\S+)", line)
        if not match or not _is_safe_path(match.group(2)):
            raise WorldIntegrityError(path, [(MANIFEST_NAME, f"line {number} is not '<sha256>  <path>': {line!r}")],
                                      rebuild_command)
        manifest[match.group(2)] = match.group(1)
    return manifest


def _is_weight_file(path: Path) -> bool:
    return path.suffix.lower() in (WEIGHT_SUFFIX, *PICKLE_SUFFIXES, *OTHER_WEIGHT_SUFFIXES)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


# --- loading

# Worlds verified in this process: resolved path -> (relative path, size, mtime_ns) of every file.
# Notebooks load the world many times; a changed, added or removed file forces a new check.
_verified: dict[Path, tuple] = {}


def _stamp(path: Path) -> tuple:
    files = [file for file in sorted(path.rglob("*")) if file.is_file()]
    return tuple((file.relative_to(path).as_posix(), file.stat().st_size, file.stat().st_mtime_ns) for file in files)


def load_shipped_world(path: Path, config: models.WorldConfig | None = None, *,
                       rebuild_command: str = REBUILD_COMMAND) -> models.TinyWorld:
    """Verify (once per process while its files are unchanged) and load the shipped world at `path`.

    `config` defaults to the one in build.json; a given config must have the shipped world's
    key. Raises WorldIntegrityError on a bad file, ValueError on a config that does not match.
    """
    path = Path(path)
    resolved = path.resolve()
    stamp = _stamp(path) if path.is_dir() else None
    if stamp is None or _verified.get(resolved) != stamp:
        verify_world(path, rebuild_command)
        _verified[resolved] = stamp
    record = json.loads((path / BUILD_NAME).read_text())
    shipped_config = _config_from_dict(record["config"], path / BUILD_NAME, record.get("build", {}).get("task"))
    rebuild = rebuild_command.format(name=path.name)
    if shipped_config.key() != record["world_key"]:
        raise ValueError(f"shipped world {path}: built by another version of the world code (key "
                         f"{record['world_key']}, this code gives {shipped_config.key()}); rebuild it with: {rebuild}")
    if config is not None and config.key() != record["world_key"]:
        raise ValueError(f"config: its key {config.key()} differs from the shipped world's {record['world_key']} "
                         f"({path}); load without a config, or rebuild for it with: {rebuild}")
    return models.load_world_folder(path, config or shipped_config)


# --- comparison (what the rebuild command prints)

def compare_worlds(a: Path, b: Path) -> dict:
    """How world `b` (e.g. rebuilt) differs from world `a` (e.g. shipped); neither is verified.

    Returns {"a", "b": paths, "world_key": {"a", "b"}, "models": {name: {"identical": bit-identical
    tensors, "max_abs_diff", "differing_tensors", "tensors", "only_in_a", "only_in_b",
    "shape_differs"}}, "tokenizer_identical", "accuracy": {model: {tier: {"a", "b", "diff" (b - a)}}}}.
    Accuracy is compared where both build.json files have a table for the model and tier.
    """
    a, b = Path(a), Path(b)
    records = {"a": _record(a), "b": _record(b)}
    tokenizer_files = {side: {file.relative_to(root / "tokenizer").as_posix(): _sha256(file)
                              for file in sorted((root / "tokenizer").rglob("*")) if file.is_file()}
                       for side, root in (("a", a), ("b", b))}
    accuracy = {}
    tables_a, tables_b = records["a"].get("accuracy", {}), records["b"].get("accuracy", {})
    for model in [name for name in tables_a if name in tables_b]:
        tiers = [tier for tier in tables_a[model] if tier in tables_b[model]]
        accuracy[model] = {tier: {"a": tables_a[model][tier], "b": tables_b[model][tier],
                                  "diff": tables_b[model][tier] - tables_a[model][tier]} for tier in tiers}
    return {
        "a": str(a), "b": str(b),
        "world_key": {"a": records["a"].get("world_key"), "b": records["b"].get("world_key")},
        "models": {name: _compare_weights(a / name, b / name) for name in MODEL_NAMES},
        "tokenizer_identical": tokenizer_files["a"] == tokenizer_files["b"],
        "accuracy": accuracy,
    }


def _record(path: Path) -> dict:
    """build.json of a shipped world; for a builder's cache folder, only its world key."""
    if (path / BUILD_NAME).is_file():
        return json.loads((path / BUILD_NAME).read_text())
    try:
        config = json.loads((path / "done.json").read_text())["config"]
        return {"world_key": _config_from_dict(config, path / "done.json").key()}
    except (OSError, KeyError, ValueError):
        return {}


def _load_tensors(folder: Path) -> dict[str, torch.Tensor]:

    files = sorted(folder.glob(f"*{WEIGHT_SUFFIX}"))
    if not files:
        raise ValueError(f"{folder}: expected {WEIGHT_SUFFIX} weights, found none")
    tensors = {}
    for file in files:  # one file, or the shards of a sharded checkpoint
        tensors.update(load_file(file))
    return tensors


def _compare_weights(folder_a: Path, folder_b: Path) -> dict:
    tensors_a, tensors_b = _load_tensors(folder_a), _load_tensors(folder_b)
    common = [name for name in tensors_a if name in tensors_b]
    shape_differs = [name for name in common
                     if tensors_a[name].shape != tensors_b[name].shape or tensors_a[name].dtype != tensors_b[name].dtype]
    max_abs_diff, differing = 0.0, 0
    for name in common:
        if name in shape_differs:
            continue
        x, y = tensors_a[name], tensors_b[name]
        if not torch.equal(x.reshape(-1).view(torch.uint8), y.reshape(-1).view(torch.uint8)):  # bits, so NaN == NaN
            differing += 1
            max_abs_diff = max(max_abs_diff, (x.double() - y.double()).abs().max().item())
    only_in_a = sorted(set(tensors_a) - set(tensors_b))
    only_in_b = sorted(set(tensors_b) - set(tensors_a))
    return {"identical": not (differing or only_in_a or only_in_b or shape_differs),
            "max_abs_diff": max_abs_diff, "differing_tensors": differing, "tensors": len(tensors_a),
            "only_in_a": only_in_a, "only_in_b": only_in_b, "shape_differs": shape_differs}


def format_comparison(comparison: dict, labels: tuple[str, str] = ("shipped", "rebuilt")) -> str:
    """Markdown for a `compare_worlds` result: a weights table and, if any, an accuracy table."""
    label_a, label_b = labels
    keys = comparison["world_key"]
    lines = [f"World `{comparison['b']}` ({label_b}, key {keys['b']}) against `{comparison['a']}` "
             f"({label_a}, key {keys['a']}).", "",
             "| model | bit-identical | max abs parameter difference | tensors differing |",
             "|---|---|---|---|"]
    for name, result in comparison["models"].items():
        structure = len(result["only_in_a"]) + len(result["only_in_b"]) + len(result["shape_differs"])
        differing = f"{result['differing_tensors']} of {result['tensors']}"
        if structure:
            differing += f" ({structure} missing or reshaped)"
        lines.append(f"| {name} | {'yes' if result['identical'] else 'no'} | {result['max_abs_diff']:.3g} | {differing} |")
    lines.append(f"| tokenizer | {'yes' if comparison['tokenizer_identical'] else 'no'} | | |")
    if comparison["accuracy"]:
        lines += ["", f"| model | tier | {label_a} | {label_b} | difference (points) |", "|---|---|---|---|---|"]
        for model, tiers in comparison["accuracy"].items():
            for tier, row in tiers.items():
                lines.append(f"| {model} | {tier} | {100 * row['a']:.1f}% | {100 * row['b']:.1f}% | {100 * row['diff']:+.1f} |")
    return "\n".join(lines) + "\n"
