"""Command line of engine_build. Long steps show progress bars; `--dry-run` prints what would happen."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from engine_build.checkpoints import PREPARED, prepare
from engine_build.gpu.cli import register_gpu_commands
from engine_build.launcher import REPO_ROOT, LaunchError, TritonPorts, TritonServer
from engine_build.profiles import PROFILES
from engine_build.repository import render_for

logger = logging.getLogger("engine_build")


def _parse_set(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def cmd_prepare(args: argparse.Namespace) -> int:
    names = list(PREPARED) if args.name == "all" else [args.name]
    for name in names:
        if args.dry_run:
            print(f"would build checkpoint {name} into {REPO_ROOT / 'checkpoints' / name}")
        else:
            prepare(name, force=args.force)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.dry_run:
        print(f"would render profile {args.profile} into {out}")
        return 0
    render_for(args.profile, args.checkpoint, out, _parse_set(args.set), force=args.force)
    print(out)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    checkpoint = args.checkpoint
    if checkpoint in PREPARED:
        prepare(checkpoint)
    repo = render_for(args.profile, checkpoint, Path(args.out), _parse_set(args.set), force=args.force)
    server = TritonServer(repo, TritonPorts.from_env())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        server.start()
    except LaunchError as exc:
        logger.error("%s", exc)
        return 1
    print(
        f"Triton serving {repo} (checkpoint {checkpoint}): http :{server.ports.http}, grpc :{server.ports.grpc}, "
        f"metrics :{server.ports.metrics}. Ctrl-C to stop.",
        flush=True,
    )
    try:
        while not stop.is_set() and server.process is not None and server.process.poll() is None:
            stop.wait(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine_build", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="build a prepared checkpoint into checkpoints/")
    p.add_argument("name", choices=[*PREPARED, "all"])
    p.add_argument("--force", action="store_true")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_prepare)

    default_ckpt = os.environ.get("LLM_CHECKPOINT", "smollm2-135m-instruct")
    p = sub.add_parser("render", help="render the model repository for a profile")
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    p.add_argument("--checkpoint", default=default_ckpt, help="prepared checkpoint name or HF checkpoint folder")
    p.add_argument("--out", default=str(REPO_ROOT / "build" / "model_repository"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a template value")
    p.add_argument("--force", action="store_true", help="replace --out even if an earlier render did not create it")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("serve", help="render the CPU profile and run Triton in the foreground")
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    p.add_argument("--checkpoint", default=default_ckpt)
    p.add_argument("--out", default=str(REPO_ROOT / "build" / "model_repository"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--force", action="store_true", help="replace --out even if an earlier render did not create it")
    p.set_defaults(func=cmd_serve)
    register_gpu_commands(sub)  # sizing/check/quantize: engine_build/gpu/
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    return int(args.func(args))
