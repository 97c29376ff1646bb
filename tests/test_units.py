import pytest

from hwsim.units import UnitError, dimension_of_field, parse_quantity


@pytest.mark.parametrize(
    ("text", "dim", "expected"),
    [
        ("3.35 TB/s", "bytes_per_s", 3.35e12),
        ("80 GB", "bytes", 80e9),
        ("80 GiB", "bytes", 80 * 2**30),
        ("228 KiB", "bytes", 228 * 1024),
        ("989.4 TFLOP/s", "flops_per_s", 989.4e12),
        ("5 us", "s", 5e-6),
        ("50 ms", "s", 0.05),
        (42, "bytes", 42.0),
        ("1e3", "bytes", 1000.0),
    ],
)
def test_parse_quantity(text, dim, expected):
    assert parse_quantity(text, dim) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("text", "dim"),
    [("3 TB", "bytes_per_s"), ("80 XB", "bytes"), ("fast", "s"), ("5 parsecs", "s"), (True, "s")],
)
def test_parse_quantity_rejects(text, dim):
    with pytest.raises(UnitError):
        parse_quantity(text, dim)


def test_dimension_of_field():
    assert dimension_of_field("capacity_bytes") == "bytes"
    assert dimension_of_field("bandwidth_bytes_per_s") == "bytes_per_s"
    assert dimension_of_field("latency_s") == "s"
    assert dimension_of_field("cores") is None
