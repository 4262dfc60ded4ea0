"""The archive is shared by the controller's threads: the proposer (where the agent
operator reads the lineage and leaves notes) and the main thread (which writes results)."""

from __future__ import annotations

import threading

from solforge.search import Archive, NoteKind
from solforge.spec import BuildSpec, Solution, SourceFile


def _solution(i: int) -> Solution:
    return Solution(name=f"k{i}", definition="p", spec=BuildSpec(language="pytorch", entry_point="m.py::run"),
                    sources=[SourceFile(path="m.py", content=f"def run(x):\n    return x + {i}\n")])


def test_two_threads_write_and_read_without_losing_anything(tmp_path):
    archive = Archive.create("p", device="cpu", strategy="lineage", operators=["tune"], seed=0, runs_root=tmp_path)
    errors: list[BaseException] = []

    def candidates() -> None:
        try:
            for i in range(60):
                archive.add_candidate(_solution(i), operator="tune", family="f", parameters={"i": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def notes() -> None:
        try:
            for i in range(60):
                archive.add_note(NoteKind.rationale, f"note {i}", operator="agent")
                archive.lineage()
                archive.notes(kind=NoteKind.rationale)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=candidates), threading.Thread(target=notes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(archive.candidates()) == 60
    assert len(archive.notes(kind=NoteKind.rationale)) == 60
    archive.close()
