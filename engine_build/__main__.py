"""`python -m engine_build`: prepare checkpoints, render the model repository, serve it with Triton."""

from engine_build.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
