"""GGUF files for the llama.cpp engine: converted with llama.cpp's own `convert_hf_to_gguf.py`.

The converter is not in the llama-cpp-python wheel, only in its sdist (`vendor/llama.cpp`), so the sdist of the
installed version is fetched from the package registry once and the converter's three parts are kept in
`build/llama-cpp-convert/`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
CONVERTER_DIR = REPO_ROOT / "build" / "llama-cpp-convert"
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")


def fetch_sdist(prefix: str, out_dir: Path, parts: tuple[str, ...] = ("",)) -> Path:
    """Unpack the files under `prefix` (e.g. `vendor/llama.cpp/`) of the installed llama-cpp-python's sdist."""
    version = metadata.version("llama-cpp-python")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"llama-cpp-python=={version}",
                "-d",
                tmp,
            ],
            check=True,
        )
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        staging = Path(tmp) / "unpacked"
        with tarfile.open(sdist) as archive:
            full_prefix = f"{archive.getnames()[0].split('/')[0]}/{prefix}"
            members = [
                m
                for m in archive.getmembers()
                if m.name.startswith(full_prefix) and m.name[len(full_prefix) :].startswith(parts)
            ]
            for member in members:
                member.name = member.name[len(full_prefix) :]
            archive.extractall(staging, members=members, filter="data")
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(out_dir)
    return out_dir


def converter_script() -> Path:
    """`convert_hf_to_gguf.py` matching the installed llama-cpp-python, unpacked on first use."""
    folder = CONVERTER_DIR / metadata.version("llama-cpp-python")
    script = folder / "convert_hf_to_gguf.py"
    if not script.is_file():
        fetch_sdist("vendor/llama.cpp/", folder, CONVERTER_PARTS)
    return script


def convert_to_gguf(hf_folder: Path, out_file: Path, outtype: str = "f32") -> Path:
    """Convert a Hugging Face checkpoint folder to one GGUF file (written atomically)."""
    partial = out_file.with_suffix(".gguf.partial")
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}  # use the converter's own gguf-py
    done = subprocess.run(
        [sys.executable, str(converter_script()), str(hf_folder), "--outfile", str(partial), "--outtype", outtype],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"convert_hf_to_gguf.py failed on {hf_folder}:\n{tail}")
    partial.rename(out_file)
    logger.info("converted %s to %s", hf_folder, out_file)
    return out_file
