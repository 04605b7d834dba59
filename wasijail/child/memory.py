"""Guest linear memory as one memoryview, bounds-checked on every access."""

from __future__ import annotations

import ctypes
import struct

from ..wasi import IOVEC, U32, U64


class Fault(Exception):
    """A guest pointer outside its linear memory (answered with EFAULT)."""


class MissingMemory(Exception):
    """A WASI call needs guest memory but the module exports none: the run cannot go on."""


class GuestMemory:
    """A cached view of the instance's `memory` export.

    The view is rebuilt whenever the memory's length changes (after
    `memory.grow`), so a host call never touches bytes the guest does not own.
    """

    __slots__ = ("_store", "_memory", "_length", "view")

    def __init__(self, store, memory) -> None:
        self._store = store
        self._memory = memory
        self._length = -1
        self.view = memoryview(b"")

    def refresh(self) -> memoryview:
        if self._memory is None:
            raise MissingMemory()
        length = self._memory.data_len(self._store)
        if length != self._length:
            base = ctypes.addressof(self._memory.data_ptr(self._store).contents)
            self.view = memoryview((ctypes.c_ubyte * length).from_address(base)).cast("B")
            self._length = length
        return self.view

    def _covering(self, end: int) -> memoryview:
        """A view reaching at least `end`, or the whole memory if it is shorter.

        Memories never move (make_engine sets memory_may_move off) and never
        shrink, so the cached view stays valid; only a longer access asks
        wasmtime for the current length.
        """
        if end <= self._length:
            return self.view
        return self.refresh()

    def slice(self, ptr: int, size: int) -> memoryview:
        end = ptr + size
        view = self._covering(end)
        if ptr < 0 or size < 0 or end > len(view):
            raise Fault(f"{size} bytes at {ptr:#x} out of bounds")
        return view[ptr:end]

    def read(self, ptr: int, size: int) -> bytes:
        return bytes(self.slice(ptr, size))

    def write(self, ptr: int, data: bytes) -> None:
        self.slice(ptr, len(data))[:] = data

    def unpack(self, layout: struct.Struct, ptr: int) -> tuple:
        end = ptr + layout.size
        view = self._covering(end)
        if ptr < 0 or end > len(view):
            raise Fault(f"{layout.size} bytes at {ptr:#x} out of bounds")
        return layout.unpack_from(view, ptr)

    def pack(self, layout: struct.Struct, ptr: int, *values: int) -> None:
        end = ptr + layout.size
        view = self._covering(end)
        if ptr < 0 or end > len(view):
            raise Fault(f"{layout.size} bytes at {ptr:#x} out of bounds")
        layout.pack_into(view, ptr, *values)

    def iovecs(self, iovs: int, count: int) -> list[memoryview]:
        """The guest's `count` iovecs at `iovs` as views of its memory, empty ones left out.

        The hot path of every fd_read/fd_write: the same bounds checks as
        `unpack` and `slice`, inlined, since a call's Python overhead is most
        of what a 1 KiB read costs.
        """
        end = iovs + IOVEC.size * count
        view = self.view if end <= self._length else self.refresh()
        if iovs < 0 or end > len(view):
            raise Fault(f"{count} iovecs at {iovs:#x} out of bounds")
        buffers = []
        unpack = IOVEC.unpack_from
        for at in range(iovs, end, IOVEC.size):
            buf, length = unpack(view, at)
            if length:
                stop = buf + length
                if stop > len(view):
                    view = self.refresh()
                    if stop > len(view):
                        raise Fault(f"{length} bytes at {buf:#x} out of bounds")
                buffers.append(view[buf:stop])
        return buffers

    def u32(self, ptr: int) -> int:
        return self.unpack(U32, ptr)[0]

    def set_u32(self, ptr: int, value: int) -> None:
        end = ptr + 4  # `pack`, inlined: every data call answers with one u32
        view = self.view if end <= self._length else self.refresh()
        if ptr < 0 or end > len(view):
            raise Fault(f"4 bytes at {ptr:#x} out of bounds")
        U32.pack_into(view, ptr, value)

    def set_u64(self, ptr: int, value: int) -> None:
        self.pack(U64, ptr, value)
