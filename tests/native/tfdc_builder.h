/*
 * tfdc_builder.h - a small, independent encoder of tfdc-packed files for the
 * C tests and the fuzz seed corpus (docs/FORMAT.md: format 1 files, and
 * format 2's kind 3 and 4 tables and segments, §5.3-§5.4, and format 2
 * descriptors with prefix codes and patches, §5.1-§6.7). It writes a minimal
 * TFLite-like flatbuffer (Model.buffers + Model.metadata only) followed by
 * the section. Deliberately simple: clarity over speed.
 */
#ifndef TFDC_BUILDER_H_
#define TFDC_BUILDER_H_

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uint8_t *d;
  size_t n, cap;
} bytes;

static void b_put(bytes *b, const void *p, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->d = (uint8_t *)realloc(b->d, b->cap);
    if (!b->d) abort();
  }
  if (n) memcpy(b->d + b->n, p, n);
  b->n += n;
}
static void b_u8(bytes *b, unsigned v) { uint8_t x = (uint8_t)v; b_put(b, &x, 1); }
static void b_u16(bytes *b, unsigned v) { b_u8(b, v & 0xff); b_u8(b, (v >> 8) & 0xff); }
static void b_u32(bytes *b, uint32_t v) { b_u16(b, v & 0xffff); b_u16(b, v >> 16); }
static void b_u64(bytes *b, uint64_t v) { b_u32(b, (uint32_t)v); b_u32(b, (uint32_t)(v >> 32)); }
static void b_set32(bytes *b, size_t at, uint32_t v) {
  b->d[at] = (uint8_t)v; b->d[at + 1] = (uint8_t)(v >> 8);
  b->d[at + 2] = (uint8_t)(v >> 16); b->d[at + 3] = (uint8_t)(v >> 24);
}
static uint32_t b_get32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Bitwise CRC-32 (independent of the decoder's table-driven one). */
static uint32_t ref_crc32(const uint8_t *p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  size_t i;
  int k;
  for (i = 0; i < n; i++) {
    c ^= p[i];
    for (k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
  }
  return ~c;
}

/* binary16 -> binary32 bits via float arithmetic (independent of the
 * decoder's bit manipulation). */
static uint32_t test_half_to_float_bits(uint16_t h) {
  uint32_t s = h >> 15, e = (h >> 10) & 31, m = h & 1023, bits;
  float v;
  if (e == 31) return (s << 31) | 0x7f800000u | (m << 13);
  v = e == 0 ? ldexpf((float)m, -24) : ldexpf((float)(1024 + m), (int)e - 25);
  if (s) v = -v;
  memcpy(&bits, &v, 4);
  return bits;
}

/* ---- code tables ---------------------------------------------------------- */

typedef struct {
  int kind;          /* 0 Huffman, 1 single symbol */
  uint32_t n;        /* alphabet */
  uint8_t len[32768]; /* kind 0 code lengths */
  uint32_t symbol;   /* kind 1 */
  uint32_t code[32768];
} btable;

/* Huffman code lengths for `freq` (O(n^2), fine for test alphabets); falls
 * back to a balanced complete code if a length would exceed 15. */
static void lengths_from_freq(btable *t, const uint64_t *freq) {
  uint32_t n = t->n, i, used = 0;
  uint64_t *w = (uint64_t *)malloc(sizeof(uint64_t) * 2 * n);
  int32_t *parent = (int32_t *)malloc(sizeof(int32_t) * 2 * n);
  uint8_t *alive = (uint8_t *)calloc(2 * n, 1);
  uint32_t nodes = n, maxl = 0;
  memset(t->len, 0, sizeof t->len);
  for (i = 0; i < n; i++) {
    w[i] = freq[i];
    parent[i] = -1;
    if (freq[i]) { alive[i] = 1; used++; }
  }
  if (used == 1) {
    for (i = 0; i < n; i++) if (freq[i]) t->len[i] = 1;
  } else if (used > 1 && n <= 1024) {
    uint32_t left = used;
    while (left > 1) {
      int32_t a = -1, b = -1;
      for (i = 0; i < nodes; i++) {
        if (!alive[i]) continue;
        if (a < 0 || w[i] < w[a]) { b = a; a = (int32_t)i; }
        else if (b < 0 || w[i] < w[b]) b = (int32_t)i;
      }
      w[nodes] = w[a] + w[b];
      parent[nodes] = -1;
      parent[a] = parent[b] = (int32_t)nodes;
      alive[a] = alive[b] = 0;
      alive[nodes] = 1;
      nodes++;
      left--;
    }
    for (i = 0; i < n; i++) {
      if (freq[i]) {
        uint32_t d = 0;
        int32_t x = (int32_t)i;
        while (parent[x] >= 0) { x = parent[x]; d++; }
        t->len[i] = (uint8_t)(d > 15 ? 16 : d);
        if (d > maxl) maxl = d;
      }
    }
  }
  if (used > 1 && (n > 1024 || maxl > 15)) {
    /* balanced complete code over all n symbols */
    uint32_t L = 0, k;
    while ((1u << L) < n) L++;
    k = (1u << L) - n; /* symbols that get length L-1 */
    for (i = 0; i < n; i++) t->len[i] = (uint8_t)(i < k ? L - 1 : L);
  }
  free(w); free(parent); free(alive);
}

/* Canonical codes (RFC 1951 §3.2.2). */
static void assign_codes(btable *t) {
  uint32_t code = 0, prev = 0, first = 1, len, s;
  for (len = 1; len <= 15; len++)
    for (s = 0; s < t->n; s++)
      if (t->len[s] == len) {
        if (!first) code = (code + 1) << (len - prev);
        first = 0;
        prev = len;
        t->code[s] = code;
      }
}

static unsigned table_max_len(const btable *t) {
  unsigned m = 0; uint32_t s;
  for (s = 0; s < t->n; s++) if (t->len[s] > m) m = t->len[s];
  return m;
}

static void write_table(bytes *b, const btable *t) {
  uint32_t i;
  b_u8(b, (unsigned)t->kind);
  b_u8(b, t->kind == 0 ? table_max_len(t) : 0);
  b_u16(b, 0);
  b_u32(b, t->n);
  if (t->kind == 1) { b_u32(b, t->symbol); return; }
  for (i = 0; i < t->n; i += 2)
    b_u8(b, (unsigned)(t->len[i] | ((i + 1 < t->n ? t->len[i + 1] : 0) << 4)));
}

/* A stream (§3.3) of `count` symbols coded with table `ti`. */
static void write_stream(bytes *b, const btable *t, int ti, const uint16_t *sym, uint64_t count,
                         uint32_t block) {
  uint64_t nseg, j, i;
  size_t lens_at;
  b_u64(b, count);
  b_u16(b, count ? (unsigned)ti : 0xFFFFu);
  b_u16(b, 0);
  if (count == 0 || t->kind == 1) { b_u32(b, 0); return; }
  b_u32(b, block);
  nseg = (count + block - 1) / block;
  lens_at = b->n;
  for (j = 0; j < nseg; j++) b_u32(b, 0);
  for (j = 0; j < nseg; j++) {
    size_t start = b->n;
    uint32_t acc = 0, nacc = 0;
    for (i = j * block; i < count && i < (j + 1) * block; i++) {
      unsigned l = t->len[sym[i]], k;
      for (k = l; k-- > 0;) {
        acc = (acc << 1) | ((t->code[sym[i]] >> k) & 1);
        if (++nacc == 8) { b_u8(b, acc); acc = nacc = 0; }
      }
    }
    if (nacc) b_u8(b, acc << (8 - nacc));
    b_set32(b, lens_at + 4 * j, (uint32_t)(b->n - start));
  }
}

/* ---- records ---------------------------------------------------------------- */

typedef struct {
  /* the expected decoded bytes of the buffer: N * es */
  const uint8_t *elems;
  uint64_t N;
  unsigned es;
  int value_mode, position_mode, scan, cb_enc;
  uint32_t scan_rows, G, block;
  int force_kind0; /* use a kind-0 table even for one distinct symbol */
  const uint8_t *gap_lengths; /* optional: code lengths of the gap table */
  /* for cb_enc 1: codebook given as binary16 and the element symbols */
  const uint16_t *half_cb;
  uint32_t half_K;
  /* filled by the builder */
  uint32_t buffer_index;
  uint64_t out_offset;
} brecord;

static int is_zero(const uint8_t *e, unsigned es) {
  unsigned i;
  for (i = 0; i < es; i++) if (e[i]) return 0;
  return 1;
}

static uint64_t elem_of(const brecord *r, uint64_t t) {
  uint64_t R = r->scan_rows, C = r->N / R;
  return r->scan ? (t % R) * C + t / R : t;
}

static void make_table(btable *t, uint32_t n, const uint16_t *sym, uint64_t count, int force_kind0) {
  uint64_t *freq = (uint64_t *)calloc(n, sizeof(uint64_t));
  uint64_t i;
  uint32_t distinct = 0, s, last = 0;
  t->n = n;
  for (i = 0; i < count; i++) freq[sym[i]]++;
  for (s = 0; s < n; s++) if (freq[s]) { distinct++; last = s; }
  if (distinct == 1 && !force_kind0) {
    t->kind = 1;
    t->symbol = last;
  } else {
    t->kind = 0;
    lengths_from_freq(t, freq);
    assign_codes(t);
  }
  free(freq);
}

/* Appends tables to `tabs` (numbering from *ntab) and the record to `recs`. */
static void write_record(bytes *recs, bytes *tabs, uint32_t *ntab, brecord *r) {
  static btable tv, tg;
  bytes rec = {0};
  uint8_t *cb = NULL;
  uint32_t K = 0, k;
  uint64_t t, nnz = 0, ngap = 0, cur = (uint64_t)-1;
  uint16_t *vsym = (uint16_t *)malloc(2 * (r->N + 1));
  uint16_t *gsym = (uint16_t *)malloc(2 * (r->N * 2 + 1));
  uint8_t *raw = (uint8_t *)malloc(r->N * r->es + 1);
  unsigned es = r->es;

  for (t = 0; t < r->N; t++) {
    const uint8_t *e = r->elems + elem_of(r, t) * es;
    if (r->position_mode == 1) {
      uint64_t d;
      if (is_zero(e, es)) continue;
      d = t - cur; /* >= 1 */
      while (d - 1 >= r->G - 1) { gsym[ngap++] = (uint16_t)(r->G - 1); d -= r->G - 1; }
      gsym[ngap++] = (uint16_t)(d - 1);
      cur = t;
    }
    if (r->value_mode == 1) {
      memcpy(raw + nnz * es, e, es);
    } else if (r->cb_enc == 1) {
      /* the caller's elements are expansions of half_cb entries: match by bits */
      for (k = 0; k < r->half_K; k++) {
        uint32_t f = test_half_to_float_bits(r->half_cb[k]);
        uint8_t fb[4] = {(uint8_t)f, (uint8_t)(f >> 8), (uint8_t)(f >> 16), (uint8_t)(f >> 24)};
        if (memcmp(fb, e, 4) == 0) break;
      }
      if (k == r->half_K) abort();
      vsym[nnz] = (uint16_t)k;
    } else {
      for (k = 0; k < K; k++) if (memcmp(cb + k * es, e, es) == 0) break;
      if (k == K) {
        cb = (uint8_t *)realloc(cb, (K + 1) * es);
        memcpy(cb + K * es, e, es);
        K++;
      }
      vsym[nnz] = (uint16_t)k;
    }
    nnz++;
  }
  if (r->cb_enc == 1) K = r->half_K;
  if (r->value_mode == 1) K = 0;

  b_u32(&rec, 0); /* size, patched */
  b_u32(&rec, r->buffer_index);
  b_u64(&rec, r->out_offset);
  b_u64(&rec, r->N * es);
  b_u8(&rec, es);
  b_u8(&rec, (unsigned)r->value_mode);
  b_u8(&rec, (unsigned)r->position_mode);
  b_u8(&rec, (unsigned)r->scan);
  b_u32(&rec, r->scan_rows);
  b_u64(&rec, nnz);
  b_u32(&rec, K);
  b_u8(&rec, (unsigned)r->cb_enc);
  b_u8(&rec, 0); b_u8(&rec, 0); b_u8(&rec, 0);
  b_u32(&rec, r->position_mode ? r->G : 0);
  if (r->cb_enc == 1) {
    for (k = 0; k < K; k++) b_u16(&rec, r->half_cb[k]);
  } else if (K) {
    b_put(&rec, cb, (size_t)K * es);
  }
  if (r->value_mode == 0) {
    int ti = -1;
    if (nnz) {
      make_table(&tv, K, vsym, nnz, r->force_kind0);
      write_table(tabs, &tv);
      ti = (int)(*ntab)++;
    }
    write_stream(&rec, &tv, ti, vsym, nnz, r->block);
  } else {
    b_put(&rec, raw, nnz * es);
  }
  if (r->position_mode == 1) {
    int ti = -1;
    if (ngap) {
      make_table(&tg, r->G, gsym, ngap, r->force_kind0);
      if (r->gap_lengths) {
        memcpy(tg.len, r->gap_lengths, r->G);
        assign_codes(&tg);
      }
      write_table(tabs, &tg);
      ti = (int)(*ntab)++;
    }
    write_stream(&rec, &tg, ti, gsym, ngap, r->block);
  }
  b_set32(&rec, 0, (uint32_t)(rec.n + 4));
  b_u32(&rec, ref_crc32(rec.d, rec.n));
  b_put(recs, rec.d, rec.n);
  free(rec.d); free(cb); free(vsym); free(gsym); free(raw);
}

/* ---- the flatbuffer ------------------------------------------------------------ */

/* Where write_flatbuffer_ex put things (positions in the flatbuffer). */
typedef struct {
  size_t bufvec;   /* Model.buffers: the u32 count, then the uoffsets */
  size_t vt_buf;   /* the vtable of the records' and the section's Buffers */
  size_t vt_data;  /* the vtable of buffer 1 (size 6: field 0 only, then a u16 not read) */
  size_t buf1_T;   /* buffer 1's table: soffset, then the data uoffset */
  size_t rec_T;    /* buffer 2's table (the first record's): soffset, offset u64, size u64 */
  size_t data_at;  /* buffer 1's data vector: the u32 count, then its bytes */
} fb_layout;

/* Buffers: index 0 is the empty sentinel, 1 holds `data` (data_len bytes)
 * in a data vector (a constant that was not packed), 2..2+nrec-1 are the
 * records' targets, the last is the section. Metadata: a decoy entry, then
 * tfdc.v1. The data vector is the last thing written: with data_len a
 * multiple of 4 its bytes end the flatbuffer. */
static void write_flatbuffer_ex(bytes *f, uint32_t nrec, const uint64_t *off, const uint64_t *size,
                                uint64_t S, uint64_t Z, int with_metadata, const uint8_t *data,
                                uint32_t data_len, fb_layout *lay) {
  uint32_t nbuf = nrec + 3, i;
  size_t model_T, bufvec, metavec, vt_buf, vt_data, vt_meta, vt_empty;
  size_t *buf_T = (size_t *)malloc(sizeof(size_t) * nbuf);
  size_t meta_T[2], name_at[2], data_at;
  const char *names[2] = {"min_runtime_version", "tfdc.v1"};
  b_u32(f, 0); /* root, patched */
  b_put(f, "TFL3", 4);
  /* model vtable: 7 fields, buffers (4) at +4, metadata (6) at +8 */
  {
    size_t vt = f->n;
    b_u16(f, 18); b_u16(f, 12);
    b_u16(f, 0); b_u16(f, 0); b_u16(f, 0); b_u16(f, 0); b_u16(f, 4); b_u16(f, 0);
    b_u16(f, with_metadata ? 8 : 0);
    b_u16(f, 0); /* pad */
    model_T = f->n;
    b_u32(f, (uint32_t)(model_T - vt));
    b_set32(f, 0, (uint32_t)model_T);
    b_u32(f, 0); b_u32(f, 0); /* patched */
  }
  vt_buf = f->n; b_u16(f, 8); b_u16(f, 20); b_u16(f, 0); b_u16(f, 4); /* data absent, offset */
  b_u16(f, 12); b_u16(f, 0); /* size; pad... vtable size 10 -> fields 0..2 */
  f->d[vt_buf] = 10;
  vt_data = f->n; b_u16(f, 6); b_u16(f, 8); b_u16(f, 4); b_u16(f, 0); /* data only */
  vt_empty = f->n; b_u16(f, 4); b_u16(f, 4);
  vt_meta = f->n; b_u16(f, 8); b_u16(f, 12); b_u16(f, 4); b_u16(f, 8);

  bufvec = f->n;
  b_set32(f, model_T + 4, (uint32_t)(bufvec - (model_T + 4)));
  b_u32(f, nbuf);
  for (i = 0; i < nbuf; i++) b_u32(f, 0);
  metavec = f->n;
  b_set32(f, model_T + 8, (uint32_t)(metavec - (model_T + 8)));
  b_u32(f, 2); b_u32(f, 0); b_u32(f, 0);

  for (i = 0; i < nbuf; i++) {
    buf_T[i] = f->n;
    if (i == 0) {
      b_u32(f, (uint32_t)(buf_T[i] - vt_empty));
    } else if (i == 1) {
      b_u32(f, (uint32_t)(buf_T[i] - vt_data));
      b_u32(f, 0); /* data uoffset, patched */
    } else {
      uint64_t o = i == nbuf - 1 ? S : off[i - 2], s = i == nbuf - 1 ? Z : size[i - 2];
      b_u32(f, (uint32_t)(buf_T[i] - vt_buf));
      b_u64(f, o); b_u64(f, s);
    }
    b_set32(f, bufvec + 4 + 4 * i, (uint32_t)(buf_T[i] - (bufvec + 4 + 4 * i)));
  }
  for (i = 0; i < 2; i++) {
    meta_T[i] = f->n;
    b_u32(f, (uint32_t)(meta_T[i] - vt_meta));
    b_u32(f, 0);
    b_u32(f, i == 1 ? nbuf - 1 : 0);
    b_set32(f, metavec + 4 + 4 * i, (uint32_t)(meta_T[i] - (metavec + 4 + 4 * i)));
  }
  for (i = 0; i < 2; i++) {
    name_at[i] = f->n;
    b_u32(f, (uint32_t)strlen(names[i]));
    b_put(f, names[i], strlen(names[i]) + 1);
    while (f->n % 4) b_u8(f, 0);
    b_set32(f, meta_T[i] + 4, (uint32_t)(name_at[i] - (meta_T[i] + 4)));
  }
  data_at = f->n;
  b_u32(f, data_len);
  b_put(f, data, data_len);
  while (f->n % 4) b_u8(f, 0);
  b_set32(f, buf_T[1] + 4, (uint32_t)(data_at - (buf_T[1] + 4)));
  if (lay) {
    lay->bufvec = bufvec;
    lay->vt_buf = vt_buf;
    lay->vt_data = vt_data;
    lay->buf1_T = buf_T[1];
    lay->rec_T = buf_T[2];
    lay->data_at = data_at;
  }
  free(buf_T);
}

/* Buffer 1 holds the string "1.5" (3 bytes; the padding is its NUL). */
static void write_flatbuffer(bytes *f, uint32_t nrec, const uint64_t *off, const uint64_t *size,
                             uint64_t S, uint64_t Z, int with_metadata) {
  static const uint8_t one_five[4] = {'1', '.', '5', 0};
  write_flatbuffer_ex(f, nrec, off, size, S, Z, with_metadata, one_five, 3, NULL); /* padded with the NUL */
}

/* Builds a complete packed file from `nrec` record specs. Record i targets
 * buffer 2+i. Returns the packed bytes; *decoded_size gets D. */
static bytes build_packed(brecord *recs, uint32_t nrec, uint64_t *decoded_size) {
  bytes fb = {0}, sec = {0}, tabs = {0}, rb = {0};
  uint64_t *off = (uint64_t *)calloc(nrec + 1, 8), *size = (uint64_t *)calloc(nrec + 1, 8);
  uint64_t S, Z = 0, D, pos;
  uint32_t ntab, i;
  int pass;
  for (pass = 0; pass < 2; pass++) {
    fb.n = sec.n = tabs.n = rb.n = 0;
    write_flatbuffer(&fb, nrec, off, size, 0, 0, 1);
    S = (fb.n + 15) / 16 * 16;
    pos = S + Z;
    for (i = 0; i < nrec; i++) {
      pos = (pos + 15) / 16 * 16;
      off[i] = pos;
      size[i] = recs[i].N * recs[i].es;
      pos += size[i];
    }
    D = pos + 7; /* a few trailing zero bytes, as a runtime might want */
    ntab = 0;
    for (i = 0; i < nrec; i++) {
      recs[i].buffer_index = 2 + i;
      recs[i].out_offset = off[i];
      write_record(&rb, &tabs, &ntab, &recs[i]);
    }
    Z = 48 + tabs.n + rb.n + 4;
  }
  fb.n = 0;
  write_flatbuffer(&fb, nrec, off, size, S, Z, 1);
  while (fb.n < S) b_u8(&fb, 0);
  b_put(&sec, "TFDC", 4);
  b_u16(&sec, 1); b_u16(&sec, 0);
  b_u32(&sec, 48); b_u32(&sec, 0);
  b_u64(&sec, Z); b_u64(&sec, D);
  b_u32(&sec, ref_crc32(fb.d, S));
  b_u32(&sec, ntab); b_u32(&sec, nrec); b_u32(&sec, 0);
  b_put(&sec, tabs.d, tabs.n);
  b_put(&sec, rb.d, rb.n);
  b_u32(&sec, ref_crc32(sec.d, sec.n));
  b_put(&fb, sec.d, sec.n);
  *decoded_size = D;
  free(sec.d); free(tabs.d); free(rb.d); free(off); free(size);
  return fb;
}

/* Locates the section of a file the builder made (last buffer's offset). */
static size_t builder_section_offset(const bytes *f) {
  /* the header magic is unique enough in builder output: search from the back */
  size_t i = f->n - 52;
  while (i > 0 && !(memcmp(f->d + i, "TFDC", 4) == 0 && b_get32(f->d + i + 8) == 48)) i--;
  return i;
}

/* Recomputes record, section and model CRCs after a deliberate edit. */
static void fix_crcs(bytes *f) {
  size_t S = builder_section_offset(f), Z = f->n - S, p, end = Z - 4;
  uint8_t *sec = f->d + S;
  uint32_t ntab = b_get32(sec + 36), nrec = b_get32(sec + 40), i;
  p = 48;
  for (i = 0; i < ntab && p + 8 <= end; i++) {
    uint32_t n = b_get32(sec + p + 4);
    p += 8 + (sec[p] == 1 ? 4 : (n + 1) / 2);
  }
  for (i = 0; i < nrec && p + 8 <= end; i++) {
    uint32_t rs = b_get32(sec + p);
    if (rs < 8 || p + rs > end) break;
    b_set32(f, S + p + rs - 4, ref_crc32(sec + p, rs - 4));
    p += rs;
  }
  b_set32(f, S + 32, ref_crc32(f->d, S));
  b_set32(f, S + Z - 4, ref_crc32(sec, Z - 4));
}

/* ---- formats 2.1 / 2.2: kind 3 and 4 tables and their segments (FORMAT.md §5.3, §5.4) */

/* LEB128, minimal (§2). */
static void b_varint(bytes *b, uint64_t v) {
  while (v >= 0x80) {
    b_u8(b, (unsigned)(v & 0x7f) | 0x80);
    v >>= 7;
  }
  b_u8(b, (unsigned)v);
}

/* A kind 3 table, or with D > 0 a kind 4 table: its fields and every class
 * table's frequencies (tables << width words, symbol s of table t at
 * [t << width | s]; kind 3 has one table per class). */
typedef struct {
  unsigned prec, width, lag1, lag2, shift, classes;
  uint32_t *freq, *cum; /* cum: filled by rt_fit, for the encoder */
  /* kind 4 (§5.4): rows of D symbols; col_group[q] (D entries, < Gc) and
   * row_group[r] (P entries, < Gr) pick the group of every column and row */
  uint32_t D, P, Gc, Gr;
  const uint32_t *col_group, *row_group;
} rtable;

/* Class tables: Gr * Gc * C (kind 4) or C. */
static uint64_t rt_tables(const rtable *t) {
  return t->D ? (uint64_t)t->Gr * t->Gc * t->classes : t->classes;
}

/* The level of a symbol: its w-bit two's complement value. */
static long rt_level(const rtable *t, unsigned s) {
  return s >= (1u << (t->width - 1)) ? (long)s - (1L << t->width) : (long)s;
}

/* The class of symbol k of a segment whose symbols start at seg (§5.3),
 * written with a division (the decoder uses a shift). */
static unsigned rt_class(const rtable *t, const uint16_t *seg, uint64_t k) {
  long a = k >= t->lag1 ? rt_level(t, seg[k - t->lag1]) : 0;
  long b = k >= t->lag2 ? rt_level(t, seg[k - t->lag2]) : 0;
  long v = a + b, d = 1L << t->shift, q, c;
  q = v >= 0 ? v / d : -((-v + d - 1) / d); /* floor */
  c = q + (long)(t->classes / 2);
  if (c < 0) c = 0;
  if (c > (long)t->classes - 1) c = (long)t->classes - 1;
  return (unsigned)c;
}

/* The class table of symbol k of a segment whose first symbol is symbol i0
 * of the stream (§5.4: t = (row_group[(i / D) mod P] Gc + col_group[i mod
 * D]) C + c with i = i0 + k), written with divisions (the decoder counts). */
static uint64_t rt_table_of(const rtable *t, const uint16_t *seg, uint64_t i0, uint64_t k) {
  uint64_t c = rt_class(t, seg, k), i = i0 + k;
  if (!t->D) return c;
  return ((uint64_t)t->row_group[(i / t->D) % t->P] * t->Gc + t->col_group[i % t->D]) * t->classes + c;
}

/* Frequencies fitted to `count` symbols coded in segments of `block`: each
 * table's histogram scaled to 2^prec, every occurring symbol >= 1 (a table
 * that never occurs codes symbol 0). The caller picks prec so that every
 * table's distinct symbols fit. */
static void rt_fit(rtable *t, const uint16_t *sym, uint64_t count, uint64_t block) {
  const uint64_t T = rt_tables(t);
  uint64_t *cnt = (uint64_t *)calloc((size_t)T << t->width, sizeof(uint64_t));
  uint64_t start, k, c;
  unsigned s, W = 1u << t->width;
  uint32_t P = 1u << t->prec;
  t->freq = (uint32_t *)calloc((size_t)T << t->width, sizeof(uint32_t));
  t->cum = (uint32_t *)calloc((size_t)T << t->width, sizeof(uint32_t));
  for (start = 0; start < count; start += block) {
    uint64_t n = count - start < block ? count - start : block;
    for (k = 0; k < n; k++) cnt[(rt_table_of(t, sym + start, start, k) << t->width) + sym[start + k]]++;
  }
  for (c = 0; c < T; c++) {
    uint64_t total = 0;
    int64_t diff;
    uint32_t *f = t->freq + ((size_t)c << t->width), *cu = t->cum + ((size_t)c << t->width), acc = 0;
    const uint64_t *h = cnt + ((size_t)c << t->width);
    for (s = 0; s < W; s++) total += h[s];
    if (!total) {
      f[0] = P;
      continue; /* cum all 0 */
    }
    diff = P;
    for (s = 0; s < W; s++) {
      if (!h[s]) continue;
      f[s] = (uint32_t)(h[s] * P / total);
      if (!f[s]) f[s] = 1;
      diff -= f[s];
    }
    while (diff != 0) { /* give to / take from the largest */
      unsigned best = 0;
      for (s = 0; s < W; s++) if (f[s] > f[best]) best = s;
      if (diff > 0) {
        f[best] += (uint32_t)diff;
        diff = 0;
      } else {
        uint32_t take = f[best] - 1 < (uint64_t)-diff ? f[best] - 1 : (uint32_t)-diff;
        if (!take) abort(); /* more distinct symbols than 2^prec */
        f[best] -= take;
        diff += take;
      }
    }
    for (s = 0; s < W; s++) {
      cu[s] = acc;
      acc += f[s];
    }
  }
  free(cnt);
}

static void rt_free(rtable *t) {
  free(t->freq);
  free(t->cum);
  t->freq = t->cum = NULL;
}

/* Deliberate breaks of a kind 3 / 4 table (rt_write's `bad`), each against
 * one rule of §5.3 / §5.4 / §5.2. The class breaks hit class table 0, or
 * the last one with RT_LAST_TABLE added. */
enum {
  RT_OK,
  RT_SUM_PLUS_ONE,  /* the table's frequencies sum to 2^prec + 1 */
  RT_PAST_WIDTH,    /* first + m = 2^w + 1 */
  RT_FREQ_TOO_BIG,  /* its first frequency is 2^prec + 1 */
  RT_TOP_SYMBOL,    /* it also codes symbol 2^w - 1 (alphabet size 2^w) */
  RT_M_ZERO,        /* it lists no symbol */
  RT_SUM_MINUS_ONE, /* its frequencies sum to 2^prec - 1 */
  RT_COL_GROUP_GC,  /* kind 4: the last col_group entry is Gc */
  RT_ROW_GROUP_GR,  /* kind 4: the last row_group entry is Gr */
  RT_FEWER_TABLES,  /* kind 4: one class table missing (the stream's bytes follow) */
  RT_LAST_TABLE = 0x100
};

/* Field numbers of rt_write's overrides: 1 prec, 2 width, 3 lag1, 4 lag2,
 * 5 shift, 6 classes, then kind 4's 7 row_len, 8 col_groups, 9 row_period,
 * 10 row_groups. */
enum { RT_F_ROW_LEN = 7, RT_F_COL_GROUPS, RT_F_ROW_PERIOD, RT_F_ROW_GROUPS };

/* The table's bytes (§5.1, §5.3, §5.4): each class table lists first ..
 * last nonzero. Field `field` (numbered as above) is written as `value`
 * instead, if nonzero, and `field2` as `value2`; `bad` breaks one class
 * table or map. */
static void rt_write2(bytes *b, const rtable *t, int field, uint64_t value, int field2, uint64_t value2,
                      int bad) {
  const uint64_t fields[10] = {t->prec, t->width, t->lag1, t->lag2, t->shift, t->classes,
                               t->D, t->Gc, t->P, t->Gr};
  const uint64_t T = rt_tables(t), broken = bad & RT_LAST_TABLE ? T - 1 : 0;
  uint64_t c, i, v;
  unsigned s;
  bad &= ~RT_LAST_TABLE;
#define RT_FIELD(k) (field == (int)(k) + 1 ? value : field2 == (int)(k) + 1 ? value2 : fields[k])
  b_varint(b, t->D ? 4 : 3);
  for (i = 0; i < 6; i++) b_varint(b, RT_FIELD(i));
  if (t->D) {
    b_varint(b, RT_FIELD(6));
    b_varint(b, RT_FIELD(7));
    for (i = 0; i < t->D; i++) {
      v = t->col_group[i];
      if (bad == RT_COL_GROUP_GC && i == t->D - 1) v = t->Gc;
      b_varint(b, v);
    }
    b_varint(b, RT_FIELD(8));
    b_varint(b, RT_FIELD(9));
    for (i = 0; i < t->P; i++) {
      v = t->row_group[i];
      if (bad == RT_ROW_GROUP_GR && i == t->P - 1) v = t->Gr;
      b_varint(b, v);
    }
  }
#undef RT_FIELD
  for (c = 0; c < T; c++) {
    const uint32_t *f = t->freq + ((size_t)c << t->width);
    unsigned first = 0, last = (1u << t->width) - 1, top = last;
    uint32_t steal = 0;
    int hit = c == broken;
    if (bad == RT_FEWER_TABLES && c == T - 1) break;
    while (!f[first]) first++;
    while (!f[last]) last--;
    if (hit && bad == RT_M_ZERO) {
      b_varint(b, first);
      b_varint(b, 0);
      continue;
    }
    if (hit && bad == RT_TOP_SYMBOL && last < top) { /* 1 from the largest to symbol 2^w - 1 */
      unsigned best = first;
      for (s = first; s <= last; s++) if (f[s] > f[best]) best = s;
      steal = best + 1; /* nonzero: which symbol gives */
      last = top;
    }
    b_varint(b, hit && bad == RT_PAST_WIDTH ? (1u << t->width) - (last - first) : first);
    b_varint(b, last - first + 1);
    for (s = first; s <= last; s++) {
      v = f[s];
      if (hit && s == first && bad == RT_SUM_PLUS_ONE) v++;
      if (hit && s == last && bad == RT_SUM_MINUS_ONE) v--; /* last has freq >= 1 */
      if (hit && s == first && bad == RT_FREQ_TOO_BIG) v = (1u << t->prec) + 1;
      if (steal && s == steal - 1) v--;
      if (steal && s == top) v++;
      b_varint(b, v);
    }
  }
}

static void rt_write(bytes *b, const rtable *t, int field, uint64_t value, int bad) {
  rt_write2(b, t, field, value, 0, 0, bad);
}

/* One segment of n symbols whose first is symbol i0 of the stream, encoded
 * backwards as §5.3's informative encoder says: the final state (4 bytes,
 * little-endian), then the pushed bytes in reverse push order. */
static void rt_encode_segment(bytes *out, const rtable *t, const uint16_t *seg, uint64_t n, uint64_t i0) {
  uint8_t *pushed = (uint8_t *)malloc(4 * n + 8);
  size_t np = 0;
  uint32_t x = 1u << 23;
  uint64_t k = n;
  while (k-- > 0) {
    size_t at = ((size_t)rt_table_of(t, seg, i0, k) << t->width) + seg[k];
    uint32_t fs = t->freq[at], cum = t->cum[at];
    if (!fs) abort(); /* a symbol the table cannot code */
    while ((uint64_t)x >= (uint64_t)fs << (31 - t->prec)) {
      pushed[np++] = (uint8_t)x;
      x >>= 8;
    }
    x = ((x / fs) << t->prec) + x % fs + cum;
  }
  b_u32(out, x);
  while (np > 0) b_u8(out, pushed[--np]);
  free(pushed);
}

/* ---- format 2 descriptors with prefix codes (§5.1, §5.2, §6) and patches (§6.7) */

/* The code tables of a file, each stored once (identical tables shared, as
 * tfdc does): their bytes back to back. */
typedef struct {
  bytes all;
  size_t start[1024], len[1024];
  uint64_t n;
} v2tabs;

/* The index of table `t`, added unless an identical one is there. */
static uint64_t v2_table_index(v2tabs *ts, const bytes *t) {
  uint64_t i;
  for (i = 0; i < ts->n; i++)
    if (ts->len[i] == t->n && memcmp(ts->all.d + ts->start[i], t->d, t->n) == 0) return i;
  if (ts->n == 1024) abort();
  ts->start[ts->n] = ts->all.n;
  ts->len[ts->n] = t->n;
  b_put(&ts->all, t->d, t->n);
  return ts->n++;
}

/* Bits of the fixed-length code for an alphabet (§5.1 kind 2): >= 1. */
static unsigned v2_width_for(uint64_t alphabet) {
  unsigned w = 1;
  while ((1ull << w) < alphabet) w++;
  return w;
}

/* One stream (§5.2) of `count` symbols < alphabet: its table (kind 1 for one
 * distinct symbol, else canonical Huffman; with `fixed`, always the kind 2
 * code of v2_width_for(alphabet) bits), its descriptor to `desc`, its
 * segments of `block` symbols to `pay`. */
static void v2_write_stream(bytes *desc, v2tabs *ts, bytes *pay, const uint16_t *sym, uint64_t count,
                            uint32_t alphabet, uint64_t block, int fixed) {
  btable *t = (btable *)calloc(1, sizeof(btable));
  uint64_t *freq = (uint64_t *)calloc(alphabet, sizeof(uint64_t));
  bytes tb = {0};
  uint64_t i, j, distinct = 0, nseg;
  uint32_t s, top = 0, width = 0;
  for (i = 0; i < count; i++) freq[sym[i]]++;
  for (s = 0; s < alphabet; s++)
    if (freq[s]) { distinct++; top = s; }
  if (fixed) {
    width = v2_width_for(alphabet);
    b_varint(&tb, 2);
    b_varint(&tb, width);
  } else if (distinct == 1) {
    b_varint(&tb, 1);
    b_varint(&tb, top);
  } else {
    uint32_t m = 0, prev = 0;
    int first = 1;
    t->n = top + 1;
    lengths_from_freq(t, freq);
    assign_codes(t);
    for (s = 0; s < t->n; s++) m += t->len[s] != 0;
    b_varint(&tb, 0);
    b_varint(&tb, m);
    for (s = 0; s < t->n; s++) {
      if (!t->len[s]) continue;
      b_varint(&tb, first ? s : s - prev - 1);
      first = 0;
      prev = s;
    }
    {
      uint32_t k = 0, nib[2];
      for (s = 0; s < t->n; s++) {
        if (!t->len[s]) continue;
        nib[k++] = t->len[s];
        if (k == 2) { b_u8(&tb, nib[0] | (nib[1] << 4)); k = 0; }
      }
      if (k) b_u8(&tb, nib[0]);
    }
  }
  b_varint(desc, v2_table_index(ts, &tb));
  if (!fixed && distinct == 1) goto done;
  b_varint(desc, block);
  nseg = (count + block - 1) / block;
  for (j = 0; j < nseg; j++) {
    bytes seg = {0};
    uint32_t acc = 0, nacc = 0;
    for (i = j * block; i < count && i < (j + 1) * block; i++) {
      unsigned l = fixed ? width : t->len[sym[i]], k;
      uint32_t code = fixed ? sym[i] : t->code[sym[i]];
      for (k = l; k-- > 0;) {
        acc = (acc << 1) | ((code >> k) & 1);
        if (++nacc == 8) { b_u8(&seg, acc); acc = nacc = 0; }
      }
    }
    if (nacc) b_u8(&seg, acc << (8 - nacc));
    b_varint(desc, seg.n);
    b_put(pay, seg.d, seg.n);
    free(seg.d);
  }
done:
  free(tb.d);
  free(freq);
  free(t);
}

/* What a record or patch codes: the bytes of its output range, and how. */
typedef struct {
  const uint8_t *bytes; /* the out_size bytes the decoder must write */
  uint64_t size;        /* out_size */
  unsigned eb, transform; /* elem_bits; 0 identity, 1 zigzag, 2 rotate (§6.2) */
  int planes, sparse;   /* value_mode 1 / position_mode 1 */
  uint64_t R, G, block; /* scan_rows; sparse: the gap alphabet; symbols per segment */
  int fixed;            /* kind 2 codes for every stream (v2_write_stream) */
} v2desc;

/* Element i of a range (§6.1): little-endian, or packed from bit 0 up. */
static uint64_t v2_elem(const uint8_t *b, uint64_t i, unsigned eb) {
  uint64_t v = 0;
  unsigned k;
  if (eb < 8) return (uint64_t)(b[i * eb / 8] >> (eb * (i % (8 / eb)))) & ((1u << eb) - 1);
  for (k = eb / 8; k-- > 0;) v = (v << 8) | b[i * (eb / 8) + k];
  return v;
}

/* The forward transform of §6.2 on w bits (the decoder applies the inverse). */
static uint64_t v2_forward(uint64_t x, unsigned tr, unsigned w) {
  uint64_t mask = w == 64 ? ~0ull : (1ull << w) - 1, top = (x >> (w - 1)) & 1;
  if (tr == 1) return ((x << 1) ^ (top ? mask : 0)) & mask;
  if (tr == 2) return ((x << 1) | top) & mask;
  return x;
}

/* The fields after buffer_index (a record) or out_size (a patch), §6: to
 * `desc`; tables to `ts`; segments to `pay`. */
static void v2_write_fields(bytes *desc, v2tabs *ts, bytes *pay, const v2desc *d) {
  const uint64_t N = d->size * 8 / d->eb, C = N / d->R;
  const unsigned P = d->eb >= 8 ? d->eb / 8 : 1;
  uint64_t *val = (uint64_t *)malloc(sizeof(uint64_t) * (N + 1)), *keys = NULL;
  uint16_t *sym = (uint16_t *)malloc(sizeof(uint16_t) * (2 * N + 1));
  uint64_t t, nnz = 0, ngap = 0, cur = UINT64_MAX, K = 0;
  unsigned p;
  /* values in stream order (§6.6), transformed; gaps between nonzeros */
  for (t = 0; t < N; t++) {
    uint64_t x = v2_elem(d->bytes, d->R > 1 ? (t % d->R) * C + t / d->R : t, d->eb), g;
    if (d->sparse) {
      if (!x) continue;
      for (g = t - cur; g - 1 >= d->G - 1; g -= d->G - 1) sym[ngap++] = (uint16_t)(d->G - 1);
      sym[ngap++] = (uint16_t)(g - 1);
      cur = t;
    }
    val[nnz++] = v2_forward(x, d->transform, d->eb);
  }
  b_varint(desc, d->eb);
  b_varint(desc, d->transform);
  b_varint(desc, d->planes ? 1 : 0);
  b_varint(desc, d->sparse ? 1 : 0);
  b_varint(desc, d->R);
  if (d->sparse) {
    b_varint(desc, nnz);
    b_varint(desc, d->G);
    b_varint(desc, ngap);
    if (ngap) v2_write_stream(desc, ts, pay, sym, ngap, (uint32_t)d->G, d->block, d->fixed);
  }
  if (!d->planes) {
    /* §6.4: the sorted distinct keys, deltas of `width` bits */
    keys = (uint64_t *)malloc(sizeof(uint64_t) * (nnz + 1));
    for (t = 0; t < nnz; t++) {
      uint64_t j = K;
      while (j > 0 && keys[j - 1] > val[t]) j--;
      if (j > 0 && keys[j - 1] == val[t]) continue;
      memmove(keys + j + 1, keys + j, sizeof(uint64_t) * (K - j));
      keys[j] = val[t];
      K++;
    }
    b_varint(desc, 0); /* expand */
    b_varint(desc, K);
    if (K) {
      unsigned width = 0, b;
      uint64_t bit = 0;
      bytes bits = {0};
      for (t = 1; t < K; t++)
        while (width < 64 && (keys[t] - keys[t - 1] - 1) >> width) width++;
      b_varint(desc, keys[0]);
      b_varint(desc, width);
      for (t = 1; t < K; t++)
        for (b = width; b-- > 0; bit++) {
          if (bit % 8 == 0) b_u8(&bits, 0);
          bits.d[bit / 8] |= (uint8_t)((((keys[t] - keys[t - 1] - 1) >> b) & 1) << (7 - bit % 8));
        }
      b_put(desc, bits.d, bits.n);
      free(bits.d);
    }
    for (t = 0; t < nnz; t++) {
      uint64_t j = 0;
      while (keys[j] != val[t]) j++;
      sym[t] = (uint16_t)j;
    }
    if (nnz) v2_write_stream(desc, ts, pay, sym, nnz, (uint32_t)K, d->block, d->fixed);
  } else if (nnz) {
    /* §6.5: plane 0 holds the most significant byte */
    for (p = 0; p < P; p++) {
      for (t = 0; t < nnz; t++)
        sym[t] = (uint16_t)(d->eb < 8 ? val[t] : (val[t] >> (8 * (P - 1 - p))) & 0xff);
      v2_write_stream(desc, ts, pay, sym, nnz, 1u << (d->eb < 8 ? d->eb : 8), d->block, d->fixed);
    }
  }
  free(val);
  free(keys);
  free(sym);
}

#endif /* TFDC_BUILDER_H_ */
