"""The channel between the grader and the worker: plain data in, plain data out, anything else refused."""

from __future__ import annotations

import pytest
import torch

from grading import wire


def test_plain_data_comes_back_equal_with_its_types_and_memory_layout():
    message = {
        "scalars": (None, True, False, 0, -7, 2**70, 1.5, float("inf"), "é ∑", torch.float64, torch.device("cpu")),
        "size": torch.Size([2, 3]),
        "tensors": [torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last), torch.randn(4, 5).t(),
                    torch.tensor(True), torch.empty(0, 3), torch.tensor(2.5, dtype=torch.float64),
                    torch.ones(3, dtype=torch.bfloat16), torch.randn(3, dtype=torch.complex64).conj(),
                    torch.arange(6, dtype=torch.int64)],
        "nested": [[{"a": []}]],
    }
    back = wire.loads(wire.dumps(message))
    assert back["scalars"] == message["scalars"] and back["size"] == message["size"]
    assert [type(item) for item in back["scalars"]] == [type(item) for item in message["scalars"]]
    for got, sent in zip(back["tensors"], message["tensors"]):
        assert type(got) is torch.Tensor and got.dtype == sent.dtype and got.shape == sent.shape
        assert torch.equal(got, sent.resolve_conj()) and not got.requires_grad
        if sent.numel() > 1 and sent.dim() > 1:
            assert got.stride() == sent.stride()
    assert back["nested"] == [[{"a": []}]]


def test_a_tensor_that_requires_grad_arrives_as_a_fresh_leaf():
    leaf = torch.randn(3, requires_grad=True)
    got = wire.loads(wire.dumps(leaf * 2))
    assert type(got) is torch.Tensor and not got.requires_grad and got.grad_fn is None


class Sneaky(torch.Tensor):
    pass


@pytest.mark.parametrize("value", [torch.zeros(2).as_subclass(Sneaky), object(), {1: "key not a str"},
                                   torch.zeros(3).to_sparse(), b"bytes"],
                         ids=["tensor subclass", "object", "int key", "sparse", "bytes"])
def test_anything_but_plain_data_is_refused_when_sent(value):
    with pytest.raises(wire.ProtocolError):
        wire.dumps(value)


def test_nesting_beyond_the_limit_is_refused():
    deep: list = []
    for _ in range(wire.MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(wire.ProtocolError, match="nested"):
        wire.dumps(deep)


@pytest.mark.parametrize("frame", [
    b"", b"Q", b"I\x00", b"S\x00\x00\x00\x09abc", b"NN", b"{\x00\x00\x00\x01I" + bytes(8),
    b"Y\x00\x00\x00\x06object",
])
def test_malformed_frames_are_refused(frame):
    with pytest.raises(wire.ProtocolError):
        wire.loads(frame)


def test_a_tensor_whose_bytes_do_not_fit_its_shape_is_refused():
    frame = bytearray(wire.dumps(torch.zeros(4, dtype=torch.float32)))
    with pytest.raises(wire.ProtocolError):
        wire.loads(bytes(frame[:-4]))  # cut short
    # The frame ends: shape (8 bytes), order (4), data size (4), data (16). Claim 5 elements instead of 4.
    frame[-25] = 5
    with pytest.raises(wire.ProtocolError, match="does not fit"):
        wire.loads(bytes(frame))
