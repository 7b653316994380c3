"""The committed gRPC stubs are exactly what protoc generates from the committed .proto files."""

from __future__ import annotations

from pathlib import Path

from contracts import regenerate


def test_regenerating_the_stubs_changes_nothing(tmp_path: Path) -> None:
    regenerate.generate(tmp_path)
    generated = sorted((tmp_path / "contracts" / "v1").glob("*_pb2*.py*"))
    assert generated, "protoc wrote no stubs"
    for fresh in generated:
        committed = regenerate.PROTO_DIR / fresh.name
        assert committed.exists(), f"{fresh.name} is generated but not committed"
        assert committed.read_bytes() == fresh.read_bytes(), f"{fresh.name} differs from a fresh protoc run"
    committed_names = {p.name for p in regenerate.PROTO_DIR.glob("*_pb2*.py*")}
    assert committed_names == {p.name for p in generated}, "a committed stub has no .proto any more"
