"""The archive has one writer thread, the controller's main thread: operators return what
they have to say, and no other thread touches the connection. A call from another
thread is refused, never interleaved."""

from __future__ import annotations

import sqlite3
import threading

from solforge.search import Archive, NoteKind


def test_another_thread_is_refused_and_nothing_is_half_written(tmp_path):
    archive = Archive.create("p", device="cpu", strategy="lineage", operators=["tune"], seed=0, runs_root=tmp_path)
    errors: list[BaseException] = []

    def note_from_elsewhere() -> None:
        try:
            archive.add_note(NoteKind.rationale, "from another thread", operator="agent")
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    t = threading.Thread(target=note_from_elsewhere)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], sqlite3.ProgrammingError)
    assert "thread" in str(errors[0])
    archive.add_note(NoteKind.rationale, "from the writer", operator="controller")
    assert [n.text for n in archive.notes()] == ["from the writer"]
    archive.close()
