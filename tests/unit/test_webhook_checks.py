from pathlib import Path

import pytest

from streams.policy import webhook_checks as checks

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"


@pytest.mark.parametrize(
    ("header", "authorization", "query", "keys"),
    [
        (None, None, None, ()),
        ("k", None, None, ("k",)),
        (None, None, "k", ("k",)),
        (None, "Bearer k", None, ("k",)),
        (None, "bearer   k ", None, ("k",)),
        (None, "Basic k", None, ()),
        (None, "Bearer", None, ()),
        ("", "", "", ()),
        ("a", "Bearer c", "b", ("a", "b", "c")),
    ],
)
def test_keys_come_from_header_bearer_or_query(header, authorization, query, keys):
    assert checks.presented_keys(header, authorization, query) == keys


@pytest.mark.parametrize(
    ("expected", "presented", "refusal"),
    [
        ("", (), checks.DISABLED),
        ("", ("",), checks.DISABLED),
        ("", ("anything",), checks.DISABLED),
        ("s3cret", (), checks.UNAUTHORIZED),
        ("s3cret", ("s3cre",), checks.UNAUTHORIZED),
        ("s3cret", ("s3cret ",), checks.UNAUTHORIZED),
        ("s3cret", ("S3CRET",), checks.UNAUTHORIZED),
        ("s3cret", ("\udcff\ud800é",), checks.UNAUTHORIZED),  # undecodable bytes: no crash
        ("s3cret", ("s3cret",), None),
        ("s3cret", ("wrong", "s3cret"), None),
        ("clé-ü", ("clé-ü",), None),
    ],
)
def test_key_check_fails_closed(expected, presented, refusal):
    assert checks.check_key(expected, presented) == refusal


def test_refusal_statuses():
    assert checks.DISABLED.status == 503
    assert "PIPEMEDIC_WEBHOOK_API_KEY" in checks.DISABLED.reason
    assert checks.UNAUTHORIZED.status == 401
    assert checks.TOO_LARGE.status == 413
    assert {checks.NOT_JSON.status, checks.NOT_AN_OBJECT.status} == {400}


@pytest.mark.parametrize(
    ("content_length", "refusal"),
    [
        (None, None),
        (0, None),
        (checks.MAX_BODY_BYTES, None),
        (checks.MAX_BODY_BYTES + 1, checks.TOO_LARGE),
        (10**12, checks.TOO_LARGE),
    ],
)
def test_declared_size(content_length, refusal):
    assert checks.check_declared_size(content_length) == refusal


@pytest.mark.parametrize(
    ("body", "refusal"),
    [
        (b"{}", None),
        (b'{"records": []}', None),
        (b'{"records": [{"category": "ActivityRuns"}]}', None),
        ('{"message": "échec"}'.encode(), None),
        (b'\xef\xbb\xbf{"a": 1}', None),  # UTF-8 BOM
        (b"", checks.NOT_JSON),
        (b"not json", checks.NOT_JSON),
        (b'{"a": ', checks.NOT_JSON),
        (b"\xff\xfe\x00{", checks.NOT_JSON),
        (b'{"a": "\xff"}', checks.NOT_JSON),
        (b"[" * 100_000, checks.NOT_JSON),  # nesting past the recursion limit
        (b"[]", checks.NOT_AN_OBJECT),
        (b"[{}]", checks.NOT_AN_OBJECT),
        (b"42", checks.NOT_AN_OBJECT),
        (b'"text"', checks.NOT_AN_OBJECT),
        (b"null", checks.NOT_AN_OBJECT),
        (b'{"records": {}}', checks.RECORDS_NOT_A_LIST),
        (b'{"records": "x"}', checks.RECORDS_NOT_A_LIST),
    ],
)
def test_payload_must_be_a_json_object(body, refusal):
    assert checks.check_payload(body) == refusal


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_every_real_payload_passes(fixture):
    body = (FIXTURES / fixture).read_bytes()
    assert len(body) <= checks.MAX_BODY_BYTES
    assert checks.check_payload(body) is None
