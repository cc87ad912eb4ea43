from streams.policy.expiry import ExpiryIndex, sweep


def test_due_pops_only_expired_heads_of_that_partition():
    index = ExpiryIndex()
    index.add(0, 10, "a")
    index.add(0, 20, "b")
    index.add(1, 5, "c")
    assert list(index.due(0, 15)) == ["a"]
    assert list(index.due(0, 15)) == []
    assert list(index.due(1, 15)) == ["c"]
    assert len(index) == 1


def test_due_is_bounded_per_call():
    index = ExpiryIndex()
    for i in range(100):
        index.add(0, i, f"k{i}")
    assert len(list(index.due(0, 1_000, limit=64))) == 64
    assert len(list(index.due(0, 1_000, limit=64))) == 36


def test_sweep_keeps_entries_that_were_refreshed_since_indexing():
    index = ExpiryIndex()
    table = {"old": 10, "refreshed": 99}
    index.add(0, 10, "old")
    index.add(0, 10, "refreshed")  # indexed before its expiry moved to 99
    deleted = sweep(index, 0, 50, table.get, table.pop)
    assert deleted == 1 and table == {"refreshed": 99}


def test_load_indexes_restored_entries_once_in_expiry_order():
    index = ExpiryIndex()
    assert index.needs_load(3)
    index.add(3, 30, "new")
    index.load(3, [("b", 20), ("a", 10), ("never", 0)])
    assert not index.needs_load(3)
    assert list(index.due(3, 100)) == ["a", "b", "new"]
