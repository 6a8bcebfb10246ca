"""The life cycle every passive or reactive agent shares: one background task running ``_run``."""

import cocotb

__all__ = ["Agent"]


class Agent:
    """Base of agents whose behaviour is one coroutine, ``_run``, started and cancelled here."""

    _task = None

    async def _run(self):
        raise NotImplementedError

    def start(self):
        """Start ``_run`` in the background; returns the agent."""
        self._task = cocotb.start_soon(self._run())
        return self

    def stop(self):
        """Cancel ``_run`` (idempotent)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
