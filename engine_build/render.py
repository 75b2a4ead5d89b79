"""Render `model_repository/` templates for one profile into a build folder.

One small renderer for every `config.pbtxt`: `${key}` placeholders are filled from the profile; a value whose
key no template uses is refused (a typo would otherwise be silently ignored); a placeholder left unfilled is only
allowed inside a `string_value`, where the models' parameter reader treats it as unset.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path

PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
UNSET_PARAMETER = re.compile(r'string_value:\s*"\$\{[A-Za-z0-9_]+\}"')
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "model_repository"


class RenderError(ValueError):
    pass


def template_keys(template_dir: Path = TEMPLATE_DIR) -> set[str]:
    keys: set[str] = set()
    for config in template_dir.glob("*/config.pbtxt"):
        keys.update(PLACEHOLDER.findall(config.read_text(encoding="utf-8")))
    return keys


def fill(text: str, values: Mapping[str, str], source: str = "template") -> str:
    filled = PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)
    leftover = PLACEHOLDER.findall(UNSET_PARAMETER.sub("", filled))
    if leftover:
        raise RenderError(f"{source}: no value for {', '.join(sorted(set(leftover)))}")
    return filled


def render_repository(out_dir: Path, values: Mapping[str, str], template_dir: Path = TEMPLATE_DIR) -> Path:
    """Copy the model repository to `out_dir` with every config filled; returns `out_dir`."""
    unknown = set(values) - template_keys(template_dir)
    if unknown:
        raise RenderError(f"unknown template keys: {', '.join(sorted(unknown))}")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(template_dir, out_dir, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for config in out_dir.glob("*/config.pbtxt"):
        (config.parent / "1").mkdir(exist_ok=True)  # an ensemble's version folder is empty, which git does not keep
        config.write_text(fill(config.read_text(encoding="utf-8"), values, str(config)), encoding="utf-8")
    return out_dir


def add_model_variant(repo: Path, source: str, name: str, parameters: Mapping[str, str]) -> Path:
    """Copy rendered model `source` as model `name` with some `parameters` set (tests and benchmarks only)."""
    target = repo / name
    shutil.copytree(repo / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    config = target / "config.pbtxt"
    text = re.sub(r'^name: "[^"]*"', f'name: "{name}"', config.read_text(encoding="utf-8"), count=1, flags=re.M)
    for key, value in parameters.items():
        line = f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}'
        text, replaced = re.subn(rf'^parameters \{{ key: "{re.escape(key)}" .*$', line, text, flags=re.M)
        if not replaced:
            text = text.rstrip("\n") + "\n" + line + "\n"
    config.write_text(text, encoding="utf-8")
    return target
