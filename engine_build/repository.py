"""A profile's model repository rendered for one checkpoint: what `render`, `serve`, `quantize --render-out`
and `make run` share (the CLI modules import this; this imports no CLI)."""

from __future__ import annotations

from pathlib import Path

from engine_build.checkpoints import resolve_checkpoint
from engine_build.profiles import PROFILES
from engine_build.render import RenderError, render_repository


def render_for(
    profile: str, checkpoint: str, out: Path, overrides: dict[str, str], force: bool = False
) -> Path:
    """Render `profile` with `checkpoint` (a prepared name or a folder) into `out`; an unknown override key or a
    refused render exits with the message (SystemExit), as the command line shows it."""
    values = PROFILES[profile].template_values()
    values["checkpoint_dir"] = str(resolve_checkpoint(checkpoint)) if checkpoint else values["checkpoint_dir"]
    unknown = set(overrides) - set(values)
    if unknown:
        raise SystemExit(f"unknown --set keys: {', '.join(sorted(unknown))}")
    values.update(overrides)
    try:
        return render_repository(out, values, force=force)
    except RenderError as exc:
        raise SystemExit(str(exc)) from None
