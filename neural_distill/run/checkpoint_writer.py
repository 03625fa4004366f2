"""One checkpoint written at a time, by a background thread, so training does not wait for disk.

The training thread takes a copy of the state it saves (tensors on the CPU: cheap next to the
write, which serialises, fsyncs and renames) and hands :meth:`BackgroundWriter.submit` a
function that writes that copy. A second checkpoint waits for the first one to be written (at
most one copy is held, and files appear in order). :meth:`BackgroundWriter.wait` is called
where a run ends, fails, is interrupted or stops at a non-finite loss, so no write is left in
flight; the thread is not a daemon either, so the interpreter itself waits for it on exit.
A write's error is raised on the training thread at the next ``submit`` or ``wait``.
"""

import logging
import threading

logger = logging.getLogger("neural_distill")


class BackgroundWriter:
    def __init__(self):
        self._thread = None
        self._error = None

    @property
    def busy(self):
        return self._thread is not None and self._thread.is_alive()

    def submit(self, write):
        """Run ``write()`` on the writer thread, once the previous write has finished."""
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(write,),
                                        name="neural_distill-checkpoint-writer")
        self._thread.start()

    def _run(self, write):
        try:
            write()
        except BaseException as exc:  # noqa: BLE001 - handed to the training thread
            self._error = exc

    def wait(self, raise_errors=True):
        """Until the write in flight (if any) is done; its error raised (or, with
        ``raise_errors=False``, logged: another error is already on its way)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is None:
            return
        if raise_errors:
            raise error
        logger.warning("the last checkpoint could not be written: %s", error)


class SyncWriter:
    """The same interface, writing on the calling thread (``checkpoint_writer: sync``)."""

    busy = False

    @staticmethod
    def submit(write):
        write()

    @staticmethod
    def wait(raise_errors=True):
        return None
