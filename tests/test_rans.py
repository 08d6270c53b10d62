"""tfdc.rans: the context-modelled range codes of table kinds 3 and 4
(FORMAT.md §5.3, §5.4)."""

import numpy as np
import pytest

import format2_builder as fb
from smooth_weights import grouped_kernel, smooth_kernel
from tfdc import FormatError, rans
from tfdc import format as fmt


def _smooth_int8(rows=40):
    return (smooth_kernel(rows) & 255).astype(np.uint16)


@pytest.fixture(params=["native", "numpy"])
def encoder(request, monkeypatch):
    """Each of rans.encode's two encoders: tfdc._native's C loop (the
    packer's, where built) and the NumPy one (the fallback)."""
    if request.param == "numpy":
        monkeypatch.setattr(rans, "_native_encoder", lambda: None)
    elif rans._native_encoder() is None:
        pytest.skip("tfdc._native is not built (or built before rans_encode)")
    return request.param


def test_encode_matches_the_spec_s_scalar_encoder(encoder):
    # tests/format2_builder.rans_segment is written from §5.3 alone.
    rng = np.random.default_rng(1)
    symbols = rng.integers(0, 8, 300).astype(np.uint16)
    for lag1, lag2, shift, classes, block in [(1, 2, 0, 5, 300), (3, 7, 1, 8, 64),
                                              (5, 5, 2, 1, 1)]:
        hist = np.bincount(rans._classes(rans.levels(symbols, 3), lag1, lag2, shift, classes,
                                         block) * 8 + symbols, minlength=classes * 8)
        freqs = np.array([rans.quantize(h, 6) for h in hist.reshape(classes, 8)])
        model = rans.Model(6, 3, lag1, lag2, shift, classes, freqs)
        seg_bytes, data = rans.encode(symbols, model, block)
        spec = [(int(np.flatnonzero(f)[0]), [int(x) for x in f[np.flatnonzero(f)[0]:
                                                                  np.flatnonzero(f)[-1] + 1]])
                for f in freqs]
        expected = [fb.rans_segment([int(s) for s in symbols[i:i + block]], 6, 3, lag1, lag2,
                                    shift, spec)
                    for i in range(0, len(symbols), block)]
        assert list(seg_bytes) == [len(e) for e in expected]
        assert data.tobytes() == b"".join(expected)
        assert np.array_equal(rans.decode(data.tobytes(), seg_bytes, len(symbols), block,
                                          model), symbols)


@pytest.mark.parametrize("seed", range(3))
def test_the_native_encoder_writes_the_numpy_encoder_s_bytes(seed, monkeypatch):
    # Skewed and flat streams, up to 15-bit precision, segments of one
    # symbol to one segment, a short last segment or none.
    if rans._native_encoder() is None:
        pytest.skip("tfdc._native is not built (or built before rans_encode)")
    rng = np.random.default_rng(seed)
    for _ in range(20):
        width = int(rng.integers(1, 9))
        p = rng.dirichlet(np.full(1 << width, rng.choice([0.05, 0.5, 5.0])))
        symbols = rng.choice(1 << width, int(rng.choice([1, 2, 99, 1000, 4096, 9000])), p=p)
        block = int(rng.choice([1, 3, 64, 1000, 4096, fmt.MAX_BLOCK]))
        model, _ = rans.fit_cost(symbols.astype(np.uint16), width, block)
        native = rans.encode(symbols, model, block)
        with monkeypatch.context() as m:
            m.setattr(rans, "_native_encoder", lambda: None)
            numpy = rans.encode(symbols, model, block)
        assert np.array_equal(native[0], numpy[0]) and native[1].tobytes() == numpy[1].tobytes()
        assert np.array_equal(rans.decode(native[1].tobytes(), native[0], len(symbols), block,
                                          model), symbols)


def test_the_native_encoder_refuses_what_no_model_codes():
    native = rans._native_encoder()
    if native is None:
        pytest.skip("tfdc._native is not built (or built before rans_encode)")
    f, c = np.array([3, 5, 3], np.int32), np.array([0, 3, 0], np.int32)
    lens, data = native(f, c, 2, 3)
    assert np.frombuffer(lens, np.int64).sum() == len(data)
    for freq, cum, block, prec, error in [
            (np.array([3, 0], np.int32), c[:2], 2, 3, "frequency is 0"),
            (np.array([9, 1], np.int32), c[:2], 2, 3, "past 2"),       # f > 2^prec
            (np.array([5, 1], np.int32), np.array([4, 0], np.int32), 2, 3, "past 2"),
            (f, c[:2], 2, 3, "differ in length"),
            (f, c, 0, 3, "block"), (f, c, 2, 0, "prec"), (f, c, 2, 16, "prec")]:
        with pytest.raises(ValueError, match=error):
            native(freq, cum, block, prec)
    for freq in (f.astype(np.int64), f.astype(np.uint8), f.astype(np.float32),
                 np.arange(6, dtype=np.int32)[::2], f.astype(">i4")):
        with pytest.raises((TypeError, ValueError), match="int32|contiguous"):
            native(freq, c, 2, 3)
    assert native(np.zeros(0, np.int32), np.zeros(0, np.int32), 4, 3) == (b"", b"")


@pytest.mark.parametrize("count,block", [(1, 4096), (5000, 4096), (4096, 4096), (777, 100),
                                         (50, 1), (300, fmt.MAX_BLOCK)])
def test_round_trip_of_fitted_models(count, block):
    symbols = _smooth_int8().reshape(-1)[:count]
    model, cost = rans.fit_cost(symbols, 8, block, (40, 784))
    seg_bytes, data = rans.encode(symbols, model, block)
    assert len(seg_bytes) == -(-count // block)
    assert np.array_equal(rans.decode(data.tobytes(), seg_bytes, count, block, model), symbols)
    if count >= 100 * block or count < 1000:
        return  # the estimate is for segments of many symbols
    table = len(fmt.deflate(model.table_bytes()))
    # The estimate the packer compares with Huffman is the real size within 2 %.
    assert abs(cost - (len(data) + table + 2.5 * len(seg_bytes) + 2)) <= 0.02 * cost + 8


def test_fit_finds_the_image_row_and_beats_order_0():
    symbols = _smooth_int8().reshape(-1)
    model, cost = rans.fit_cost(symbols, 8, 16384, (40, 784))
    assert {model.lag1, model.lag2} == {1, 28}
    assert model.classes > 1
    order0, cost0 = rans.fit_order0(symbols, 8, 16384)
    assert cost < 0.9 * cost0
    seg_bytes, data = rans.encode(symbols, model, 16384)
    assert np.array_equal(rans.decode(data.tobytes(), seg_bytes, len(symbols), 16384, model),
                          symbols)


def test_int4_levels_are_two_s_complement():
    assert list(rans.levels(np.arange(16), 4)) == list(range(8)) + list(range(-8, 0))
    assert list(rans.levels(np.arange(2), 1)) == [0, -1]


def test_quantize_keeps_every_used_symbol_and_sums_exactly():
    rng = np.random.default_rng(3)
    for prec in (4, 8, 12, 15):
        counts = rng.integers(0, 1000, 16) * (rng.random(16) < 0.7)
        counts[0] = 1
        f = rans.quantize(counts, prec)
        assert f.sum() == 1 << prec
        assert ((f > 0) == (counts > 0)).all()
    assert rans.quantize(np.ones(40), 5) is None        # 40 symbols, 32 slots
    assert rans.quantize(np.zeros(4), 3).sum() == 8     # an unused class


def test_table_bytes_round_trip_through_the_parser():
    from tfdc.unpack import _Cursor, _parse_table
    symbols = _smooth_int8(rows=4).reshape(-1)
    model = rans.fit(symbols, 8, 4096, (4, 784))
    data = model.table_bytes()
    t = _parse_table(_Cursor(data, 0, len(data), "meta"), 0, fmt.FLAG_RANS)
    assert t.kind == fmt.TABLE_RANS and t.n == model.alphabet and t.size == len(data)
    parsed = t.rans_model()
    assert np.array_equal(parsed.freqs, model.freqs[:, :t.n])
    assert (parsed.lag1, parsed.lag2, parsed.shift, parsed.classes, parsed.prec,
            parsed.width) == (model.lag1, model.lag2, model.shift, model.classes, model.prec,
                              model.width)


def test_table_bytes_list_each_row_from_its_first_to_its_last_used_symbol():
    # §5.3 row by row: first used symbol, span, the span's frequencies (one
    # varint each); rows that start at 0, end at the last symbol, or use one.
    rng = np.random.default_rng(5)
    freqs = np.zeros((5, 16), np.int64)
    freqs[0, [0, 15]] = [100, 156]
    freqs[1, 7] = 256
    freqs[2, 3:9] = [0, 0, 1, 0, 0, 0]
    freqs[2, 3] += 255
    freqs[3] = rng.multinomial(256, np.ones(16) / 16)
    freqs[4, 14:] = [200, 56]
    model = rans.Model(8, 4, 1, 2, 0, 5, freqs)
    head = b"".join(fmt.varint_bytes(v) for v in (fmt.TABLE_RANS, 8, 4, 1, 2, 0, 5))
    rows = []
    for row in freqs:
        used = np.flatnonzero(row)
        first, last = int(used[0]), int(used[-1])
        rows += [first, last - first + 1] + [int(f) for f in row[first:last + 1]]
    assert model.table_bytes() == head + b"".join(fmt.varint_bytes(v) for v in rows)
    with pytest.raises(ValueError, match="all zeros"):
        rans.Model(8, 4, 1, 2, 0, 2, np.vstack([freqs[0], np.zeros(16, np.int64)])).table_bytes()


@pytest.mark.parametrize("seed", range(4))
def test_the_entropy_bound_never_changes_the_fitted_model(seed, monkeypatch):
    # fit_cost skips quantisers whose entropy bound is over the best size so
    # far; pricing every one must choose the same model at the same size.
    rng = np.random.default_rng(seed)
    symbols = [_smooth_int8(rows=2).reshape(-1),
               rng.integers(0, 4, 700).astype(np.uint16),
               np.repeat(rng.integers(0, 16, 90), 7).astype(np.uint16),
               (rng.laplace(0, 3, 3000).round().astype(np.int64) % 256).astype(np.uint16)][seed]
    width, shape = ((8, (2, 784)), (2, ()), (4, (90, 7)), (8, (30, 100)))[seed]
    fast = rans.fit_cost(symbols, width, 4096, shape)
    monkeypatch.setattr(rans, "_lower_bound", lambda *args: -np.inf)
    full = rans.fit_cost(symbols, width, 4096, shape)
    assert fast[1] == full[1]
    assert fast[0].table_bytes() == full[0].table_bytes()


def test_short_streams_search_the_frequencies_instead_of_a_lookup():
    # Fewer symbols than classes x 2^prec / 16: no lookup is built; the
    # binary search over all classes' cumulative frequencies decodes the same.
    symbols = _smooth_int8(rows=2).reshape(-1)
    model = rans.fit(symbols, 8, 4096, (2, 784))
    model = rans.Model(15, 8, model.lag1, model.lag2, model.shift, model.classes,
                       np.array([rans.quantize(h, 15) for h in rans._histogram(
                           symbols.astype(np.int64), rans.tables_of(symbols, model, 4096),
                           model.classes, 256)]))
    assert len(symbols) < (model.classes << 15) // 16
    seg_bytes, data = rans.encode(symbols, model, 4096)
    assert np.array_equal(rans.decode(data.tobytes(), seg_bytes, len(symbols), 4096, model),
                          symbols)


def test_decode_rejects_damaged_segments():
    symbols = _smooth_int8(rows=2).reshape(-1)
    model = rans.fit(symbols, 8, 1000, (2, 784))
    seg_bytes, data = rans.encode(symbols, model, 1000)
    good = data.tobytes()
    cases = {
        "flipped byte": good[:20] + bytes([good[20] ^ 0x10]) + good[21:],
        "byte missing": good[:-1],
        "extra byte": good + b"\0",
    }
    for name, bad in cases.items():
        lens = np.array(seg_bytes)
        lens[-1] += len(bad) - len(good)
        with pytest.raises(FormatError, match="range-coded segment"):
            rans.decode(bad, lens, len(symbols), 1000, model)



def test_a_segment_that_runs_out_of_bytes_is_truncated():
    # FORMAT.md §5.3: "MUST be p < B, else TRUNCATED", and a segment shorter
    # than its 4-byte state is too (the C decoder's statuses). The Python
    # decoder said "corrupt".
    symbols = _smooth_int8(rows=2).reshape(-1)
    model = rans.fit(symbols, 8, 1000, (2, 784))
    seg_bytes, data = rans.encode(symbols, model, 1000)
    for cut in (seg_bytes[0] // 2, 3):  # the first segment's 1,000 symbols
        with pytest.raises(FormatError) as error:
            rans.decode(data.tobytes()[:cut], [cut], 1000, 1000, model)
        assert error.value.status == "truncated", (cut, str(error.value))

# ------------------------------------------------------------------ kind 4


def _grouped_model(symbols, width, groups, lag1=1, lag2=3, shift=0, classes=3, prec=7,
                   block=4096):
    """A kind 4 model with `groups`, its frequencies fitted to `symbols`."""
    tables = groups.count * classes
    proto = rans.Model(prec, width, lag1, lag2, shift, classes,
                       np.zeros((tables, 1 << width), np.int64), groups)
    hist = np.bincount(rans.tables_of(symbols, proto, block) * (1 << width) + symbols,
                       minlength=tables << width).reshape(tables, 1 << width)
    return rans.Model(prec, width, lag1, lag2, shift, classes,
                      np.array([rans.quantize(h, prec) for h in hist]), groups)


def _spec_tables(model):
    return [(int(np.flatnonzero(f)[0]),
             [int(x) for x in f[np.flatnonzero(f)[0]:np.flatnonzero(f)[-1] + 1]])
            for f in model.freqs]


def test_groups_number_rows_and_columns_as_the_spec_says():
    g = rans.Groups(row_len=3, col_groups=2, col_group=[1, 0, 1], row_groups=3,
                    row_group=[2, 0])
    # i = 0..8: rows 0, 0, 0, 1, 1, 1, 2, 2, 2 -> row map entries 0, 1, 0
    assert list(g.of(np.arange(9))) == [5, 4, 5, 1, 0, 1, 5, 4, 5]
    assert g.count == 6


@pytest.mark.parametrize("block", [1, 5, 64, 300, fmt.MAX_BLOCK])
def test_kind_4_encode_matches_the_spec_s_scalar_encoder(block, encoder):
    # Segments that start mid-row and rows that wrap the row map: the
    # scalar encoder of tests/format2_builder.py is written from §5.4 alone.
    rng = np.random.default_rng(block % 1000)
    symbols = rng.integers(0, 8, 300).astype(np.uint16)
    groups = rans.Groups(row_len=7, col_groups=3, col_group=rng.integers(0, 3, 7),
                         row_groups=2, row_group=rng.integers(0, 2, 5))
    model = _grouped_model(symbols, 3, groups, block=block)
    seg_bytes, data = rans.encode(symbols, model, block)
    spec_groups = dict(C=3, row_len=7, col_groups=3, col_group=[int(x) for x in groups.col_group],
                       row_groups=2, row_group=[int(x) for x in groups.row_group])
    expected = [fb.rans_segment([int(s) for s in symbols[i:i + block]], 7, 3, 1, 3, 0,
                                _spec_tables(model), groups=spec_groups, start=i)
                for i in range(0, len(symbols), min(block, len(symbols)))]
    assert list(seg_bytes) == [len(e) for e in expected]
    assert data.tobytes() == b"".join(expected)
    assert np.array_equal(rans.decode(data.tobytes(), seg_bytes, len(symbols), block, model),
                          symbols)
    assert model.table_bytes() == fb.rans_table(7, 3, 1, 3, 0, _spec_tables(model),
                                                groups=spec_groups)


def test_fit_grouped_finds_the_rows_and_columns_of_a_grouped_kernel():
    kernel = grouped_kernel(rows=40, row_len=256, bits=4, seed=3)
    symbols = (kernel & 15).reshape(-1).astype(np.uint16)
    base, base_cost = rans.fit_cost(symbols, 4, 32768, kernel.shape)
    layout = rans.group_layout(len(symbols), kernel.shape)
    assert layout == (256, 40)
    model, cost = rans.fit_grouped(symbols, 4, 32768, base, layout)
    assert cost < 0.93 * base_cost
    g = model.groups
    # the two row spreads are two groups, exactly
    spread = kernel.std(axis=1)
    wide = spread > (spread.min() + spread.max()) / 2
    assert g.row_groups == 2 and 0 < wide.sum() < len(wide)
    assert len({int(x) for x in g.row_group[wide]}) == 1
    assert len({int(x) for x in g.row_group[~wide]}) == 1
    # the columns at position 0 of each block of 16 share a group
    assert g.col_groups >= 2 and len({int(x) for x in g.col_group[::16]}) == 1
    seg_bytes, data = rans.encode(symbols, model, 32768)
    assert np.array_equal(rans.decode(data.tobytes(), seg_bytes, len(symbols), 32768, model),
                          symbols)
    # the estimate is the real size within 2 %
    real = len(data) + len(fmt.deflate(model.table_bytes())) + 2.5 * len(seg_bytes) + 2
    assert abs(cost - real) <= 0.02 * cost


def test_group_layout_of_tensors_and_packed_sub_byte_symbols():
    assert rans.group_layout(300 * 784, (300, 784)) == (784, 300)
    assert rans.group_layout(300 * 392, (300, 784)) == (392, 300)   # two int4 per byte
    assert rans.group_layout(24 * 9, (24, 3, 3)) == (9, 24)
    assert rans.group_layout(100, (100,)) is None                  # no rows
    assert rans.group_layout(5 * 70000, (5, 70000)) is None        # rows too long
    assert rans.group_layout(3 * 7, (3, 8)) is None                # not the tensor


def test_kind_4_table_bytes_round_trip_through_the_parser():
    from tfdc.unpack import _Cursor, _parse_table
    kernel = grouped_kernel(rows=24, row_len=128, bits=4, seed=5)
    symbols = (kernel & 15).reshape(-1).astype(np.uint16)
    base = rans.fit(symbols, 4, 32768, kernel.shape)
    model, _ = rans.fit_grouped(symbols, 4, 32768, base, (128, 24))
    data = model.table_bytes()
    t = _parse_table(_Cursor(data, 0, len(data), "meta"), 0, fmt.FLAG_RANS_GROUPED)
    assert t.kind == fmt.TABLE_RANS_GROUPED and t.size == len(data)
    parsed = t.rans_model()
    assert np.array_equal(parsed.freqs, model.freqs[:, :t.n])
    assert parsed.groups.row_len == 128 and parsed.classes == model.classes
    assert np.array_equal(parsed.groups.col_group, model.groups.col_group)
    assert np.array_equal(parsed.groups.row_group, model.groups.row_group)
    # a kind 4 table needs flags bit 1
    with pytest.raises(FormatError, match="flags"):
        _parse_table(_Cursor(data, 0, len(data), "meta"), 0, fmt.FLAG_RANS)


def test_kind_4_short_streams_search_the_frequencies():
    # 256 tables x 2^10 / 16 lookup entries > the symbols: binary search.
    rng = np.random.default_rng(2)
    symbols = rng.integers(0, 4, 900).astype(np.uint16)
    groups = rans.Groups(row_len=30, col_groups=8, col_group=np.arange(30) % 8,
                         row_groups=4, row_group=np.arange(30) % 4)
    model = _grouped_model(symbols, 2, groups, classes=8, prec=10, block=100)
    assert model.tables == 256 and len(symbols) < (256 << 10) // 16
    seg_bytes, data = rans.encode(symbols, model, 100)
    assert np.array_equal(rans.decode(data.tobytes(), seg_bytes, len(symbols), 100, model),
                          symbols)


def test_wide_rows_are_not_clustered_by_column():
    # 40,000 columns x 256 symbols of histograms would be 80 MB: only the
    # rows are grouped (each row a different spread).
    rng = np.random.default_rng(6)
    kernel = np.round(rng.normal(size=(6, 40000)) * np.array([2, 2, 9, 9, 30, 30])[:, None])
    symbols = (kernel.astype(np.int64) & 255).reshape(-1).astype(np.uint16)
    base = rans.fit(symbols, 8, 32768, kernel.shape)
    model, _ = rans.fit_grouped(symbols, 8, 32768, base, (40000, 6))
    assert model.groups.col_groups == 1 and model.groups.row_groups == 3
    assert list(model.groups.row_group) == [0, 0, 1, 1, 2, 2]
