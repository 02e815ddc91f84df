"""The engine's state as one msgpack document: saved every checkpoint interval, read at start."""

from __future__ import annotations

from typing import Any, Final

import msgspec
import numpy as np

from rules.exceptions import CheckpointError
from rules.state import Baseline, Bin, BuildingState, Wristband

CHECKPOINT_VERSION: Final = 1


class Checkpoint(msgspec.Struct):
    """Every subject's state, the clock time it was saved at, and the journal it includes.

    `journal_lsn` is the last journal entry whose inputs the state holds: after a crash
    the entries after it are replayed. Checkpoints written before the journal read as 0.
    """

    version: int
    saved_ms: int
    wristbands: dict[str, Wristband]
    bins: dict[str, Bin]
    buildings: dict[str, BuildingState]
    baselines: dict[str, Baseline]
    journal_lsn: int = 0


def _enc(obj: Any) -> Any:
    if type(obj) is np.ndarray:
        # dtype.str ('<u4'), not str(dtype) ('uint32'): the latter cost 70 % of a 100k-band
        # checkpoint. Both read back (np.frombuffer takes either).
        return (obj.dtype.str, obj.shape, obj.tobytes())
    msg = f"cannot checkpoint {type(obj).__name__}"
    raise NotImplementedError(msg)


def _dec(kind: type, obj: Any) -> Any:
    if kind is np.ndarray:
        dtype, shape, data = obj
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    msg = f"cannot restore {kind.__name__}"
    raise NotImplementedError(msg)


encode_checkpoint = msgspec.msgpack.Encoder(enc_hook=_enc).encode
_decoder = msgspec.msgpack.Decoder(Checkpoint, dec_hook=_dec)


def decode_checkpoint(data: bytes) -> Checkpoint:
    """The checkpoint in `data`, as saved."""
    return _decoder.decode(data)


def restore_checkpoint(data: bytes, now: int) -> Checkpoint:
    """The checkpoint in `data`, ready to run at clock time `now`; CheckpointError if foreign.

    Silence is measured from the restore, not the save: the time we were down is not
    the devices' silence, nor part of an offline grace.
    """
    checkpoint = decode_checkpoint(data)
    if checkpoint.version != CHECKPOINT_VERSION:
        msg = f"checkpoint version {checkpoint.version}, expected {CHECKPOINT_VERSION}"
        raise CheckpointError(msg)
    saved = checkpoint.saved_ms
    devices: list[Wristband | Bin] = [*checkpoint.wristbands.values(), *checkpoint.bins.values()]
    for st in devices:
        if st.last_rx:
            st.last_rx = max(st.last_rx, now - (saved - st.last_rx))
        if not st.online and st.offline_since >= 0:
            st.offline_since = now - (saved - st.offline_since)
    for baseline in checkpoint.baselines.values():
        baseline.hist = baseline.hist.astype(np.uint32, copy=False)  # saved as uint16 once
    return checkpoint
