"""Regenerate the gRPC stubs next to the .proto files: ``python -m contracts.regenerate``.

The stubs are committed so that a node runs without grpcio-tools; ``tests/contracts/test_stubs.py``
checks that regenerating changes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent / "v1"
ROOT = PROTO_DIR.parent.parent


def protoc_arguments(out_dir: Path) -> list[str]:
    """The protoc command line that writes the stubs for every contract into ``out_dir``."""
    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(ROOT)) for p in PROTO_DIR.glob("*.proto"))
    return [
        "grpc_tools.protoc",
        f"-I{ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]


def generate(out_dir: Path = ROOT) -> None:
    """Run protoc; raises RuntimeError naming protoc's exit status on failure."""
    from grpc_tools import protoc

    status = protoc.main(protoc_arguments(out_dir))
    if status != 0:
        raise RuntimeError(f"protoc failed with exit status {status}")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
