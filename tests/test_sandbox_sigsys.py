"""wasijail.sandbox.sigsys: the native SIGSYS handler's layout (it runs in tests/escape/)."""

from __future__ import annotations

from wasijail.sandbox import sigsys


def test_native_handler_layout():
    code = sigsys.HANDLER_X86_64
    assert len(code) == sigsys.HANDLER_FD_OFFSET + 4
    assert code[sigsys.HANDLER_FD_OFFSET:] == b"\xff\xff\xff\xff"
    # "violatio" and "n:" immediates, and the syscall numbers it uses
    assert bytes.fromhex("76696f6c6174696f") in code
    assert bytes.fromhex("6e3a") in code
    for nr in (1, 13, 14, 39, 186, 231, 234):       # write, rt_sigaction, ...
        assert b"\xb8" + nr.to_bytes(4, "little") in code  # mov eax, imm32
