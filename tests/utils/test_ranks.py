import pytest
import torch

from onet.utils.errors import UsageError
from onet.utils.ranks import Launch, Share, launch_info, parse_shard


def test_shares_are_disjoint_and_cover_the_list():
    items = list(range(11))
    parts = [Share(i, 4).take(items) for i in range(4)]
    assert sorted(x for p in parts for x in p) == items
    assert parts[1] == [1, 5, 9] and Share().take(items) == items and Share().whole
    with pytest.raises(ValueError, match="0 <= index < count"):
        Share(4, 4)


def test_shard_and_ranks_compose():
    # shard 1 of 3 run by a 2-rank job: shares 2 and 3 of 6
    assert [Launch(r, 2).share((1, 3)) for r in range(2)] == [Share(2, 6), Share(3, 6)]
    # over every shard and rank, each object is taken exactly once
    items = list(range(20))
    taken = [x for i in range(3) for r in range(2) for x in Launch(r, 2).share((i, 3)).take(items)]
    assert sorted(taken) == items
    assert Launch().share() == Share(0, 1) and Launch(1, 4).share() == Share(1, 4)


def test_device_per_rank_and_single_process_defaults(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert launch_info() == Launch()
    set_to = []
    monkeypatch.setattr(torch.cuda, "set_device", set_to.append)  # no GPU needed to check the choice
    assert Launch(3, 4, local_rank=1).device(torch.device("cuda")) == torch.device("cuda", 1)
    assert set_to == [torch.device("cuda", 1)]
    assert Launch(3, 4, local_rank=1).device(torch.device("cpu")) == torch.device("cpu")
    assert Launch().device(torch.device("cuda")) == torch.device("cuda")


@pytest.mark.parametrize("text", ["3", "a/b", "2/2", "-1/3", "0/0"])
def test_parse_shard_rejects(text):
    with pytest.raises(UsageError, match="--shard"):
        parse_shard(text)
    assert parse_shard("3/16") == (3, 16)
