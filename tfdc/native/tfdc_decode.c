/*
 * tfdc_decode.c - decoder for tfdc-packed .tflite files (docs/FORMAT.md, v1).
 *
 * Written from the specification alone. Structure:
 *   1. little-endian loads, CRC-32 (slice-by-8)
 *   2. a minimal bounds-checked flatbuffer reader (FORMAT.md §2)
 *   3. container checks: locate the section, header, checksums (§3.1)
 *   4. code tables and table-driven canonical-Huffman decoding (§3.2, §3.3)
 *   5. records: validation, scatter of values to positions (§3.4)
 *
 * Safety: every read of the input goes through an explicit bounds check, all
 * size arithmetic is done in uint64_t with overflow checks, and all work is
 * bounded by the input size or the decoded size D (which the caller limits by
 * the output capacity it provides).
 */
#include "tfdc_decode.h"

#include <stdlib.h>
#include <string.h>

#include "tfdc_crc32_table.h"

#if defined(__GNUC__) || defined(__clang__)
#define TFDC_LIKELY(x) __builtin_expect(!!(x), 1)
#define TFDC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define TFDC_LIKELY(x) (x)
#define TFDC_UNLIKELY(x) (x)
#endif

#define HEADER_SIZE 48u
#define RECORD_FIXED 52u /* bytes of a record before its codebook */
#define STREAM_FIXED 16u /* count, table, reserved, block */
#define MAX_ALPHABET 32768u
#define MAX_CODE_LEN 15u
#define PRIMARY_BITS 11u
/* Primary table plus all subtables never exceed 2^11 + 2^15 entries: each of
 * the 2^11 prefixes owns at most 2^(15-11) subtable entries. */
#define HTAB_ENTRIES ((1u << PRIMARY_BITS) + (1u << MAX_CODE_LEN))
#define CHUNK 4096u /* symbols decoded per step into an L1-resident buffer */

/* ------------------------------------------------------------------------ */
/* 1. Loads and CRC-32                                                       */

static uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t ld32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t ld64(const uint8_t *p) { return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32); }

/* 8 bytes as a big-endian integer: the bit reader is most-significant first. */
static uint64_t ld64be(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && \
    (defined(__GNUC__) || defined(__clang__))
  return __builtin_bswap64(v);
#else
  return ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) | ((uint64_t)p[2] << 40) |
         ((uint64_t)p[3] << 32) | ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16) |
         ((uint64_t)p[6] << 8) | (uint64_t)p[7];
#endif
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((unused)) /* fuzzing builds skip checksums */
#endif
static uint32_t crc32_bytes(const uint8_t *p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  while (n >= 8) {
    uint32_t a = c ^ ld32(p), b = ld32(p + 4);
    c = tfdc_crc32_tab[7][a & 0xff] ^ tfdc_crc32_tab[6][(a >> 8) & 0xff] ^
        tfdc_crc32_tab[5][(a >> 16) & 0xff] ^ tfdc_crc32_tab[4][a >> 24] ^
        tfdc_crc32_tab[3][b & 0xff] ^ tfdc_crc32_tab[2][(b >> 8) & 0xff] ^
        tfdc_crc32_tab[1][(b >> 16) & 0xff] ^ tfdc_crc32_tab[0][b >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = tfdc_crc32_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

/* Fuzzing builds skip checksums so that mutated inputs reach the parsers
 * behind them. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define crc_ok(computed, stored) 1
#else
#define crc_ok(computed, stored) ((computed) == (stored))
#endif

const char *tfdc_strerror(int status) {
  switch (status) {
    case TFDC_OK: return "ok";
    case TFDC_ERR_ARGUMENT: return "invalid argument";
    case TFDC_ERR_NOT_PACKED: return "not a tfdc-packed model (no tfdc.v1 metadata)";
    case TFDC_ERR_FLATBUFFER: return "malformed or truncated flatbuffer";
    case TFDC_ERR_TRUNCATED: return "truncated tfdc section or record";
    case TFDC_ERR_VERSION: return "unsupported tfdc format major version";
    case TFDC_ERR_CHECKSUM: return "CRC-32 mismatch: the file is corrupted";
    case TFDC_ERR_CORRUPT: return "corrupt tfdc section: a field breaks a rule of the format";
    case TFDC_ERR_OUTPUT_SIZE: return "output buffer smaller than the decoded size";
    case TFDC_ERR_NOMEM: return "out of memory";
    case TFDC_ERR_TOO_LARGE: return "decoded size too large";
    default: return "unknown tfdc status";
  }
}

/* ------------------------------------------------------------------------ */
/* 2. Minimal flatbuffer reader (§2). Positions are uint64_t; every read is  */
/*    checked against the file length.                                       */

typedef struct {
  const uint8_t *buf;
  uint64_t len;
} fbuf;

static int fb_in(const fbuf *f, uint64_t pos, uint64_t n) { return pos <= f->len && n <= f->len - pos; }

static int fb_u32(const fbuf *f, uint64_t pos, uint32_t *v) {
  if (!fb_in(f, pos, 4)) return TFDC_ERR_FLATBUFFER;
  *v = ld32(f->buf + pos);
  return TFDC_OK;
}

/* Position of field `id` of the table at T, or 0 if the field is absent
 * (position 0 is the root offset, never a field). */
static int fb_field(const fbuf *f, uint64_t T, unsigned id, uint64_t *field) {
  uint32_t sv;
  int64_t V;
  uint16_t vt_size, o;
  int rc = fb_u32(f, T, &sv);
  if (rc) return rc;
  V = (int64_t)T - (int64_t)(int32_t)sv;
  if (V < 0 || !fb_in(f, (uint64_t)V, 4)) return TFDC_ERR_FLATBUFFER;
  vt_size = ld16(f->buf + V);
  if (vt_size < 4 || (vt_size & 1)) return TFDC_ERR_FLATBUFFER;
  *field = 0;
  if (4u + 2u * id >= vt_size) return TFDC_OK;
  if (!fb_in(f, (uint64_t)V + 4 + 2 * id, 2)) return TFDC_ERR_FLATBUFFER;
  o = ld16(f->buf + V + 4 + 2 * id);
  if (o != 0) *field = T + o;
  return TFDC_OK;
}

/* Follows the uoffset stored at F. */
static int fb_deref(const fbuf *f, uint64_t F, uint64_t *target) {
  uint32_t u;
  int rc = fb_u32(f, F, &u);
  if (rc) return rc;
  *target = F + u;
  return TFDC_OK;
}

/* Vector at P with elements of `elem` bytes: count and element start. */
static int fb_vector(const fbuf *f, uint64_t P, uint64_t elem, uint32_t *n, uint64_t *start) {
  int rc = fb_u32(f, P, n);
  if (rc) return rc;
  if (!fb_in(f, P + 4, (uint64_t)*n * elem)) return TFDC_ERR_FLATBUFFER;
  *start = P + 4;
  return TFDC_OK;
}

/* Reference field `id` of table T: vector position, or 0 when absent. */
static int fb_ref_field(const fbuf *f, uint64_t T, unsigned id, uint64_t *pos) {
  uint64_t F;
  int rc = fb_field(f, T, id, &F);
  if (rc) return rc;
  *pos = 0;
  return F ? fb_deref(f, F, pos) : TFDC_OK;
}

static int fb_scalar_u64(const fbuf *f, uint64_t T, unsigned id, uint64_t *v) {
  uint64_t F;
  int rc = fb_field(f, T, id, &F);
  if (rc) return rc;
  *v = 0;
  if (!F) return TFDC_OK;
  if (!fb_in(f, F, 8)) return TFDC_ERR_FLATBUFFER;
  *v = ld64(f->buf + F);
  return TFDC_OK;
}

/* What the decoder needs from one Buffer table. */
typedef struct {
  uint64_t offset, size;
  int has_data; /* data vector present and non-empty */
} fb_buffer;

typedef struct {
  fbuf f;
  uint32_t num_buffers;
  uint64_t buffers_start; /* position of the first uoffset of Model.buffers */
} fb_model;

static int fb_get_buffer(const fb_model *m, uint32_t idx, fb_buffer *b) {
  uint64_t T, data;
  int rc;
  if (idx >= m->num_buffers) return TFDC_ERR_CORRUPT;
  if ((rc = fb_deref(&m->f, m->buffers_start + 4ull * idx, &T))) return rc;
  if ((rc = fb_scalar_u64(&m->f, T, 1, &b->offset))) return rc;
  if ((rc = fb_scalar_u64(&m->f, T, 2, &b->size))) return rc;
  if ((rc = fb_ref_field(&m->f, T, 0, &data))) return rc;
  b->has_data = 0;
  if (data) {
    uint32_t n;
    uint64_t start;
    if ((rc = fb_vector(&m->f, data, 1, &n, &start))) return rc;
    b->has_data = n != 0;
  }
  return TFDC_OK;
}

/* ------------------------------------------------------------------------ */
/* 3. Container: locate the section, check header and checksums.             */

typedef struct {
  fb_model model;
  uint32_t section_buffer;
  uint64_t S, Z, D;
  const uint8_t *sec; /* = in + S */
  uint32_t num_tables, num_records;
} container;

/* Finds the unique tfdc.v1 metadata entry (§2, "Locating the section"). */
static int locate_section(const uint8_t *in, size_t in_len, container *c) {
  fbuf *f = &c->model.f;
  uint32_t root, nmeta, i, buf_idx = 0;
  uint64_t meta, meta_start, buffers;
  int rc, found = 0;
  fb_buffer sb;

  f->buf = in;
  f->len = (uint64_t)in_len;
  if (in_len < 8) return TFDC_ERR_FLATBUFFER;
  root = ld32(in);
  if (memcmp(in + 4, "TFL3", 4) != 0) return TFDC_ERR_FLATBUFFER;

  if ((rc = fb_ref_field(f, root, 6, &meta))) return rc;
  if (!meta) return TFDC_ERR_NOT_PACKED;
  if ((rc = fb_vector(f, meta, 4, &nmeta, &meta_start))) return rc;
  for (i = 0; i < nmeta; i++) {
    uint64_t T, name, name_start, bfield;
    uint32_t name_len;
    if ((rc = fb_deref(f, meta_start + 4ull * i, &T))) return rc;
    if ((rc = fb_ref_field(f, T, 0, &name))) return rc;
    if (!name) continue;
    if ((rc = fb_vector(f, name, 1, &name_len, &name_start))) return rc;
    if (name_len != 7 || memcmp(in + name_start, TFDC_METADATA_NAME, 7) != 0) continue;
    if (found) return TFDC_ERR_CORRUPT; /* more than one tfdc.v1 entry */
    found = 1;
    if ((rc = fb_field(f, T, 1, &bfield))) return rc;
    buf_idx = 0;
    if (bfield) {
      if ((rc = fb_u32(f, bfield, &buf_idx))) return rc;
    }
  }
  if (!found) return TFDC_ERR_NOT_PACKED;

  if ((rc = fb_ref_field(f, root, 4, &buffers))) return rc;
  c->model.num_buffers = 0;
  c->model.buffers_start = 0;
  if (buffers) {
    if ((rc = fb_vector(f, buffers, 4, &c->model.num_buffers, &c->model.buffers_start))) return rc;
  }
  if ((rc = fb_get_buffer(&c->model, buf_idx, &sb))) return rc;
  c->section_buffer = buf_idx;
  c->S = sb.offset;
  c->Z = sb.size;
  if (c->S <= 1 || c->S % 16 != 0 || c->Z < HEADER_SIZE + 4 || sb.has_data) return TFDC_ERR_CORRUPT;
  if (c->S > f->len || f->len - c->S != c->Z) return TFDC_ERR_CORRUPT;
  c->sec = in + c->S;
  return TFDC_OK;
}

static int check_container_impl(const uint8_t *in, size_t in_len, container *c, int verify_crc) {
  int rc;
  const uint8_t *h;
  if (!in) return TFDC_ERR_ARGUMENT;
  if ((rc = locate_section(in, in_len, c))) return rc;
  h = c->sec;
  if (memcmp(h, "TFDC", 4) != 0) return TFDC_ERR_CORRUPT;
  if (ld16(h + 4) != TFDC_FORMAT_MAJOR) return TFDC_ERR_VERSION;
  /* Checksums before interpreting anything else (§3.1). */
  if (verify_crc && !crc_ok(crc32_bytes(h, (size_t)(c->Z - 4)), ld32(h + c->Z - 4))) return TFDC_ERR_CHECKSUM;
  if (verify_crc && !crc_ok(crc32_bytes(in, (size_t)c->S), ld32(h + 32))) return TFDC_ERR_CHECKSUM;
  if (ld32(h + 8) != HEADER_SIZE || ld32(h + 12) != 0 || ld32(h + 44) != 0) return TFDC_ERR_CORRUPT;
  if (ld64(h + 16) != c->Z) return TFDC_ERR_CORRUPT;
  c->D = ld64(h + 24);
  if (c->D < c->S + c->Z) return TFDC_ERR_CORRUPT;
  c->num_tables = ld32(h + 36);
  c->num_records = ld32(h + 40);
  if (c->num_tables > 65535u) return TFDC_ERR_CORRUPT;
  return TFDC_OK;
}

static int check_container(const uint8_t *in, size_t in_len, container *c) {
  return check_container_impl(in, in_len, c, 1);
}

int tfdc_peek_decoded_size(const uint8_t *in, size_t in_len, uint64_t *out_size) {
  container c;
  int rc;
  if (!out_size) return TFDC_ERR_ARGUMENT;
  if ((rc = check_container_impl(in, in_len, &c, 0))) return rc;
  *out_size = c.D;
  return TFDC_OK;
}

int tfdc_is_packed(const uint8_t *in, size_t in_len) {
  container c;
  if (!in) return 0;
  return locate_section(in, in_len, &c) == TFDC_OK;
}

int tfdc_decoded_size(const uint8_t *in, size_t in_len, uint64_t *out_size) {
  container c;
  int rc;
  if (!out_size) return TFDC_ERR_ARGUMENT;
  if ((rc = check_container(in, in_len, &c))) return rc;
  *out_size = c.D;
  return TFDC_OK;
}

/* ------------------------------------------------------------------------ */
/* 4. Code tables and Huffman decoding (§3.2, §3.3).                         */

typedef struct {
  uint8_t kind, max_len;
  uint32_t n;
  uint32_t symbol;         /* kind 1 */
  const uint8_t *lengths;  /* kind 0: ceil(n/2) bytes of nibbles */
} code_table;

/* Parses and validates every table; `pos` advances past them. */
static int parse_tables(const container *c, code_table *t, uint64_t *pos) {
  uint64_t p = *pos, end = c->Z - 4;
  uint32_t i;
  for (i = 0; i < c->num_tables; i++) {
    const uint8_t *h;
    if (end - p < 8) return TFDC_ERR_TRUNCATED;
    h = c->sec + p;
    t[i].kind = h[0];
    t[i].max_len = h[1];
    t[i].n = ld32(h + 4);
    if (ld16(h + 2) != 0 || t[i].n < 1 || t[i].n > MAX_ALPHABET) return TFDC_ERR_CORRUPT;
    p += 8;
    if (t[i].kind == 1) {
      if (t[i].max_len != 0) return TFDC_ERR_CORRUPT;
      if (end - p < 4) return TFDC_ERR_TRUNCATED;
      t[i].symbol = ld32(c->sec + p);
      if (t[i].symbol >= t[i].n) return TFDC_ERR_CORRUPT;
      p += 4;
    } else if (t[i].kind == 0) {
      uint32_t nb = (t[i].n + 1) / 2, j, kraft = 0, maxl = 0;
      const uint8_t *L;
      if (end - p < nb) return TFDC_ERR_TRUNCATED;
      L = c->sec + p;
      t[i].lengths = L;
      if ((t[i].n & 1) && (L[nb - 1] >> 4) != 0) return TFDC_ERR_CORRUPT;
      for (j = 0; j < nb; j++) {
        unsigned lo = L[j] & 15, hi = L[j] >> 4;
        /* Each term is at most 2^14; the running sum fits easily. */
        if (lo) kraft += 1u << (15 - lo);
        if (hi) kraft += 1u << (15 - hi);
        if (lo > maxl) maxl = lo;
        if (hi > maxl) maxl = hi;
        if (kraft > (1u << 15)) return TFDC_ERR_CORRUPT;
      }
      if (maxl == 0 || maxl != t[i].max_len) return TFDC_ERR_CORRUPT;
      p += nb;
    } else {
      return TFDC_ERR_CORRUPT;
    }
  }
  *pos = p;
  return TFDC_OK;
}

/* Decoding table entry (uint32_t):
 *   direct:   symbol << 16 | code length            (length 1..15)
 *   subtable: start << 16 | SUB | sub_bits << 8     (start indexes the table)
 *   invalid:  0 (a bit pattern that is no code)
 */
#define HE_SUB 0x8000u

typedef struct {
  uint32_t *e;      /* HTAB_ENTRIES */
  unsigned bits;    /* primary table index bits = min(max_len, 11) */
  int built_for;    /* table index it holds, -1 if none */
} htab;

static void build_htab(htab *h, const code_table *t, int table_index, uint16_t *sorted) {
  uint32_t count[MAX_CODE_LEN + 1] = {0}, offs[MAX_CODE_LEN + 2];
  uint8_t sub_len[1u << PRIMARY_BITS]; /* longest code length per long prefix */
  uint32_t sub_start[1u << PRIMARY_BITS] = {0};
  unsigned TB = t->max_len < PRIMARY_BITS ? t->max_len : PRIMARY_BITS;
  uint32_t n = t->n, s, k, total, next_free, code = 0;
  unsigned len, prev_len = 0;

  for (s = 0; s < n; s++) count[(t->lengths[s >> 1] >> ((s & 1) * 4)) & 15]++;
  offs[1] = 0;
  for (len = 1; len <= MAX_CODE_LEN; len++) offs[len + 1] = offs[len] + count[len];
  total = offs[MAX_CODE_LEN + 1];
  for (s = 0; s < n; s++) {
    unsigned l = (t->lengths[s >> 1] >> ((s & 1) * 4)) & 15;
    if (l) sorted[offs[l]++] = (uint16_t)s;
  }
  memset(h->e, 0, sizeof(uint32_t) << TB);
  memset(sub_len, 0, sizeof sub_len);

  /* Pass 1: the longest code under each primary prefix sizes its subtable. */
  if (t->max_len > TB) {
    code = 0;
    prev_len = 0;
    for (k = 0, len = 1; len <= MAX_CODE_LEN; len++) {
      uint32_t j;
      for (j = 0; j < count[len]; j++, k++) {
        if (k > 0) code = (code + 1) << (len - prev_len);
        prev_len = len;
        if (len > TB) {
          uint32_t prefix = code >> (len - TB);
          if (len > sub_len[prefix]) sub_len[prefix] = (uint8_t)len;
        }
      }
    }
    next_free = 1u << TB;
    for (k = 0; k < (1u << TB); k++) {
      if (sub_len[k]) {
        unsigned sb = sub_len[k] - TB;
        sub_start[k] = next_free;
        memset(h->e + next_free, 0, sizeof(uint32_t) << sb);
        h->e[k] = (next_free << 16) | HE_SUB | (sb << 8);
        next_free += 1u << sb;
      }
    }
  }

  /* Pass 2: fill entries, replicating each code over the bits after it. */
  code = 0;
  prev_len = 0;
  for (k = 0, len = 1; len <= MAX_CODE_LEN; len++) {
    uint32_t j;
    for (j = 0; j < count[len]; j++, k++) {
      uint32_t sym = sorted[k], entry = (sym << 16) | len, i, reps, base;
      if (k > 0) code = (code + 1) << (len - prev_len);
      prev_len = len;
      if (len <= TB) {
        base = code << (TB - len);
        reps = 1u << (TB - len);
        for (i = 0; i < reps; i++) h->e[base + i] = entry;
      } else {
        uint32_t prefix = code >> (len - TB);
        unsigned sb = sub_len[prefix] - TB, rest = len - TB;
        base = sub_start[prefix] + ((code & ((1u << rest) - 1)) << (sb - rest));
        reps = 1u << (sb - rest);
        for (i = 0; i < reps; i++) h->e[base + i] = entry;
      }
    }
  }
  (void)total;
  h->bits = TB;
  h->built_for = table_index;
}

/* A coded stream being read, possibly across several calls. */
typedef struct {
  uint64_t count;        /* symbols in the stream */
  uint64_t left;         /* symbols not yet returned */
  uint32_t block;
  int kind1;
  uint16_t symbol1;
  const htab *h;
  const uint8_t *seg_lens;  /* u32 per segment */
  uint64_t nseg, seg;       /* segments, index of the current one */
  const uint8_t *seg_start; /* current segment */
  uint64_t seg_bytes, seg_left;
  const uint8_t *next_seg;
  const uint8_t *in_end; /* fast refills may read up to here */
  /* bit reader: `buf` holds `bits` valid bits left-aligned; `p` next byte */
  uint64_t buf;
  unsigned bits;
  const uint8_t *p;
  uint64_t over; /* zero bits supplied past the segment's end */
} stream;

typedef struct {
  uint64_t count;
  int table; /* -1 for count == 0 */
  uint32_t block;
  uint64_t nseg;
  const uint8_t *seg_lens;
  const uint8_t *data;
  uint64_t data_bytes;
} stream_info;

/* Parses a stream header (§3.3) at rec[*pos] within a record of `len` bytes
 * (the record CRC excluded). Checks every structural rule. */
static int parse_stream(const uint8_t *rec, uint64_t len, uint64_t *pos, const code_table *tables,
                        uint32_t num_tables, uint32_t alphabet_limit, stream_info *si) {
  const uint8_t *h;
  uint32_t table, i;
  uint64_t p = *pos, total = 0;
  if (len - p < STREAM_FIXED) return TFDC_ERR_TRUNCATED;
  h = rec + p;
  si->count = ld64(h);
  table = ld16(h + 8);
  si->block = ld32(h + 12);
  if (ld16(h + 10) != 0) return TFDC_ERR_CORRUPT;
  p += STREAM_FIXED;
  si->nseg = 0;
  si->seg_lens = rec + p;
  si->data_bytes = 0;
  if (si->count == 0) {
    if (table != 0xFFFFu || si->block != 0) return TFDC_ERR_CORRUPT;
    si->table = -1;
  } else {
    if (table >= num_tables) return TFDC_ERR_CORRUPT;
    if (tables[table].n > alphabet_limit) return TFDC_ERR_CORRUPT;
    si->table = (int)table;
    if (tables[table].kind == 1) {
      if (si->block != 0) return TFDC_ERR_CORRUPT;
    } else {
      if (si->block == 0) return TFDC_ERR_CORRUPT;
      si->nseg = si->count / si->block + (si->count % si->block != 0);
      if (si->nseg > (len - p) / 4) return TFDC_ERR_TRUNCATED;
      for (i = 0; i < si->nseg; i++) total += ld32(rec + p + 4 * i); /* < 2^64: nseg < 2^62 */
      p += 4 * si->nseg;
      if (total > len - p) return TFDC_ERR_TRUNCATED;
      si->data_bytes = total;
    }
  }
  si->data = rec + p;
  *pos = p + si->data_bytes;
  return TFDC_OK;
}

static void stream_open(stream *s, const stream_info *si, const code_table *tables, const htab *h,
                        const uint8_t *in_end) {
  memset(s, 0, sizeof *s);
  s->count = s->left = si->count;
  s->block = si->block;
  s->in_end = in_end;
  if (si->count == 0) return;
  if (tables[si->table].kind == 1) {
    s->kind1 = 1;
    s->symbol1 = (uint16_t)tables[si->table].symbol;
    return;
  }
  s->h = h;
  s->seg_lens = si->seg_lens;
  s->nseg = si->nseg;
  s->seg = 0;
  s->next_seg = si->data;
  s->seg_left = 0; /* the first read opens segment 0 */
}

/* Checks the end of the current segment: the codes used exactly
 * ceil(bits / 8) == segment_bytes bytes and the padding bits are zero. */
static int segment_finish(const stream *s) {
  uint64_t consumed = (uint64_t)(s->p - s->seg_start) * 8 + s->over - s->bits;
  uint64_t need = (consumed + 7) / 8;
  if (consumed > s->seg_bytes * 8) return TFDC_ERR_TRUNCATED; /* ran past its end */
  if (need != s->seg_bytes) return TFDC_ERR_CORRUPT;
  if (consumed % 8) {
    unsigned pad = 8 - (unsigned)(consumed % 8);
    if (s->seg_start[s->seg_bytes - 1] & ((1u << pad) - 1)) return TFDC_ERR_CORRUPT;
  }
  return TFDC_OK;
}

static void segment_open(stream *s) {
  s->seg_bytes = ld32(s->seg_lens + 4 * s->seg);
  s->seg_start = s->next_seg;
  s->next_seg += s->seg_bytes;
  s->seg_left = s->block;
  if (s->seg_left > s->left) s->seg_left = s->left;
  s->buf = 0;
  s->bits = 0;
  s->p = s->seg_start;
  s->over = 0;
}

/* Byte-wise refill near the end of the input; bytes past the segment read as
 * zero (a code that uses them is caught by segment_finish). */
static void refill_slow(stream *s) {
  const uint8_t *seg_end = s->seg_start + s->seg_bytes;
  while (s->bits <= 56) {
    if (s->p < seg_end) {
      s->buf |= (uint64_t)*s->p++ << (56 - s->bits);
    } else {
      s->over += 8;
    }
    s->bits += 8;
  }
}

#define HUFF_DECODE_ONE(dst)                                              \
  do {                                                                    \
    uint32_t e_ = tab[buf >> shift_primary];                              \
    if (TFDC_UNLIKELY(e_ & HE_SUB)) {                                     \
      unsigned sb_ = (e_ >> 8) & 15;                                      \
      e_ = tab[(e_ >> 16) + (uint32_t)((buf << TB) >> (64 - sb_))];       \
    }                                                                     \
    if (TFDC_UNLIKELY((e_ & 0xff) == 0)) return TFDC_ERR_CORRUPT;         \
    buf <<= (e_ & 0xff);                                                  \
    bits -= (e_ & 0xff);                                                  \
    (dst) = (uint16_t)(e_ >> 16);                                         \
  } while (0)

/* Decodes `n` symbols (n <= s->seg_left) of the current segment. */
static int segment_decode(stream *s, uint16_t *dst, uint32_t n) {
  const uint32_t *tab = s->h->e;
  const unsigned TB = s->h->bits, shift_primary = 64 - TB;
  uint64_t buf = s->buf;
  unsigned bits = s->bits;
  const uint8_t *p = s->p;
  uint32_t i = 0;
  /* Fast path: after a branchless refill there are >= 56 valid bits, enough
   * for three codes of up to 15 bits. Reads may run past the segment (never
   * past the input); segment_finish rejects a segment whose codes used them. */
  if (s->in_end - p >= 8) {
    const uint8_t *fast_end = s->in_end - 8;
    while (n - i >= 3 && p <= fast_end) {
      buf |= ld64be(p) >> bits;
      p += (63 - bits) >> 3;
      bits |= 56;
      HUFF_DECODE_ONE(dst[i]);
      HUFF_DECODE_ONE(dst[i + 1]);
      HUFF_DECODE_ONE(dst[i + 2]);
      i += 3;
    }
  }
  s->buf = buf;
  s->bits = bits;
  s->p = p;
  while (i < n) {
    if (s->bits < MAX_CODE_LEN) refill_slow(s);
    if (s->over > 64) return TFDC_ERR_TRUNCATED; /* codes ran well past the segment */
    buf = s->buf;
    bits = s->bits;
    HUFF_DECODE_ONE(dst[i]);
    s->buf = buf;
    s->bits = bits;
    i++;
  }
  return TFDC_OK;
}

/* Returns the next `n` symbols of the stream (n <= s->left). */
static int stream_read(stream *s, uint16_t *dst, uint32_t n) {
  uint32_t done = 0;
  int rc;
  if (s->kind1) {
    uint32_t i;
    for (i = 0; i < n; i++) dst[i] = s->symbol1;
    s->left -= n;
    return TFDC_OK;
  }
  while (done < n) {
    uint32_t take;
    if (s->seg_left == 0) segment_open(s);
    take = (uint64_t)(n - done) < s->seg_left ? n - done : (uint32_t)s->seg_left;
    if ((rc = segment_decode(s, dst + done, take))) return rc;
    done += take;
    s->seg_left -= take;
    s->left -= take;
    if (s->seg_left == 0) {
      if ((rc = segment_finish(s))) return rc;
      s->seg++;
    }
  }
  return TFDC_OK;
}

/* ------------------------------------------------------------------------ */
/* 5. Records (§3.4).                                                        */

static uint32_t half_to_single(uint16_t h) {
  uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 0x3ffu;
  if (e == 31) return s | 0x7f800000u | (m << 13);
  if (e == 0) {
    if (m == 0) return s;
    e = 127 - 15 + 1;
    while (!(m & 0x400u)) {
      m <<= 1;
      e--;
    }
    return s | (e << 23) | ((m & 0x3ffu) << 13);
  }
  return s | ((e - 15 + 127) << 23) | (m << 13);
}

typedef struct {
  code_table *tables;
  htab vals, gaps;
  uint16_t *sorted; /* MAX_ALPHABET scratch for table building */
  uint8_t *codebook; /* MAX_ALPHABET * 8 bytes */
  uint16_t *sym_a, *sym_b; /* CHUNK each */
} workspace;

/* Writes one element (value bytes `v`) at element index `i`. */
static inline void put_elem(uint8_t *out, uint64_t i, const uint8_t *v, unsigned es) {
  switch (es) {
    case 1: out[i] = v[0]; break;
    case 2: memcpy(out + 2 * i, v, 2); break;
    case 4: memcpy(out + 4 * i, v, 4); break;
    default: memcpy(out + 8 * i, v, 8); break;
  }
}

/* Dense record: every stream index gets the next value. */
static int decode_dense(workspace *w, stream *vs, const uint8_t *raw, int value_mode, uint8_t *out,
                        uint64_t N, unsigned es, int scan, uint64_t R) {
  const uint8_t *cb = w->codebook;
  uint64_t t = 0, row = 0, col = 0, C = N / R;
  int rc;
  while (t < N) {
    uint32_t n = (N - t) < CHUNK ? (uint32_t)(N - t) : CHUNK, i;
    const uint16_t *sym = w->sym_a;
    if (value_mode == 0) {
      if ((rc = stream_read(vs, w->sym_a, n))) return rc;
    }
    if (scan == 0) {
      if (value_mode == 1) {
        memcpy(out + t * es, raw + t * es, (size_t)n * es);
      } else if (es == 4) {
        uint8_t *o = out + 4 * t;
        for (i = 0; i < n; i++) memcpy(o + 4 * i, cb + 4 * (uint32_t)sym[i], 4);
      } else if (es == 1) {
        uint8_t *o = out + t;
        for (i = 0; i < n; i++) o[i] = cb[sym[i]];
      } else {
        for (i = 0; i < n; i++) put_elem(out, t + i, cb + (size_t)es * sym[i], es);
      }
    } else {
      for (i = 0; i < n; i++) {
        const uint8_t *v = value_mode ? raw + (t + i) * es : cb + (size_t)es * sym[i];
        put_elem(out, row * C + col, v, es);
        if (++row == R) {
          row = 0;
          col++;
        }
      }
    }
    t += n;
  }
  return TFDC_OK;
}

/* Sparse record: gap symbols give stream indices (§3.4 "Positions"). */
static int decode_sparse(workspace *w, stream *vs, stream *gs, const uint8_t *raw, int value_mode,
                         uint8_t *out, uint64_t N, unsigned es, int scan, uint64_t R, uint64_t nnz,
                         uint32_t G) {
  const uint8_t *cb = w->codebook;
  const uint32_t filler = G - 1;
  uint64_t cur = UINT64_MAX; /* -1 */
  /* Row and column of `cur` in the column-major walk (scan 1), kept
   * incrementally: a division per element would cost more than the
   * Huffman decoding. Index -1 is row R - 1 of column -1 (unsigned wrap). */
  uint64_t row = R - 1, col = UINT64_MAX;
  uint64_t values_used = 0, C = N / R;
  uint64_t zeroed = 0; /* scan 0: elements [0, zeroed) are zeroed, == cur + 1 */
  uint16_t last = 0;
  int rc;
  while (gs->left > 0) {
    uint32_t n = gs->left < CHUNK ? (uint32_t)gs->left : CHUNK, i, k, nv = 0;
    uint64_t advance = 0; /* n <= 2^12 steps of < 2^16 each: no overflow */
    if ((rc = stream_read(gs, w->sym_b, n))) return rc;
    for (i = 0; i < n; i++) {
      nv += w->sym_b[i] != filler;
      advance += w->sym_b[i] == filler ? filler : (uint64_t)w->sym_b[i] + 1;
    }
    if (nv > nnz - values_used) return TFDC_ERR_CORRUPT;
    if (!scan) {
      /* Row-major: this chunk's indices lie in (cur, cur + advance]; zero
       * that range once (it stays in cache for the value writes below). */
      if (advance > N - zeroed) return TFDC_ERR_CORRUPT; /* past the end */
      memset(out + zeroed * es, 0, (size_t)(advance * es));
      zeroed += advance;
    }
    if (value_mode == 0 && nv) {
      if ((rc = stream_read(vs, w->sym_a, nv))) return rc;
    }
    for (i = 0, k = 0; i < n; i++) {
      uint32_t g = w->sym_b[i];
      const uint8_t *v;
      uint64_t step = g == filler ? filler : (uint64_t)g + 1;
      cur += step;
      /* A filler past the end can only be followed by an index past it. */
      if (cur >= N) return TFDC_ERR_CORRUPT;
      if (scan) {
        row += step; /* row < R <= N and step < 2^16: no overflow */
        if (row >= R) {
          if (row - R < R) {
            row -= R;
            col++;
          } else {
            col += row / R;
            row %= R;
          }
        }
      }
      if (g == filler) continue;
      v = value_mode ? raw + (values_used + k) * es : cb + (size_t)es * w->sym_a[k];
      k++;
      put_elem(out, scan ? row * C + col : cur, v, es);
    }
    values_used += nv;
    last = w->sym_b[n - 1];
  }
  if (values_used != nnz) return TFDC_ERR_CORRUPT;
  if (gs->count > 0 && last == filler) return TFDC_ERR_CORRUPT;
  if (!scan) memset(out + zeroed * es, 0, (size_t)((N - zeroed) * es));
  return TFDC_OK;
}

static int get_htab(workspace *w, htab *h, const code_table *tables, int table) {
  if (table < 0 || tables[table].kind != 0) return TFDC_OK;
  if (h->built_for != table) build_htab(h, &tables[table], table, w->sorted);
  return TFDC_OK;
}

/* Parses, checks and decodes the record at section offset `pos`. */
static int decode_record(const container *c, workspace *w, uint64_t *pos, uint64_t *prev_end,
                         uint8_t *out, const uint8_t *in_end) {
  const uint8_t *rec = c->sec + *pos;
  uint64_t avail = c->Z - 4 - *pos, rsize, body, p, out_offset, out_size, N, nnz, cb_bytes;
  uint32_t buffer_index, scan_rows, K, G, entry;
  unsigned es, value_mode, position_mode, scan, cb_enc;
  fb_buffer fbb;
  stream_info vsi, gsi;
  stream vs, gs;
  const uint8_t *raw = NULL;
  int rc;

  if (avail < RECORD_FIXED + 4) return TFDC_ERR_TRUNCATED;
  rsize = ld32(rec);
  if (rsize < RECORD_FIXED + 4) return TFDC_ERR_CORRUPT;
  if (rsize > avail) return TFDC_ERR_TRUNCATED;
  body = rsize - 4;
  if (!crc_ok(crc32_bytes(rec, (size_t)body), ld32(rec + body))) return TFDC_ERR_CHECKSUM;

  buffer_index = ld32(rec + 4);
  out_offset = ld64(rec + 8);
  out_size = ld64(rec + 16);
  es = rec[24];
  value_mode = rec[25];
  position_mode = rec[26];
  scan = rec[27];
  scan_rows = ld32(rec + 28);
  nnz = ld64(rec + 32);
  K = ld32(rec + 40);
  cb_enc = rec[44];
  G = ld32(rec + 48);

  if (out_size == 0 || (es != 1 && es != 2 && es != 4 && es != 8) || out_size % es) return TFDC_ERR_CORRUPT;
  N = out_size / es;
  if (value_mode > 1 || position_mode > 1 || scan > 1) return TFDC_ERR_CORRUPT;
  if (scan_rows == 0 || N % scan_rows != 0 || (scan == 0 && scan_rows != 1)) return TFDC_ERR_CORRUPT;
  if (position_mode == 0 ? nnz != N : nnz > N) return TFDC_ERR_CORRUPT;
  if (value_mode == 0 ? (K > MAX_ALPHABET || (nnz > 0 && K == 0)) : K != 0) return TFDC_ERR_CORRUPT;
  if (cb_enc > 1 || (cb_enc == 1 && es != 4)) return TFDC_ERR_CORRUPT;
  if (rec[45] || rec[46] || rec[47]) return TFDC_ERR_CORRUPT;
  if (position_mode == 1 ? (G < 2 || G > MAX_ALPHABET) : G != 0) return TFDC_ERR_CORRUPT;

  /* Output range and agreement with the flatbuffer. */
  if (out_offset % 16 != 0 || out_offset < c->S + c->Z || out_offset < *prev_end) return TFDC_ERR_CORRUPT;
  if (out_offset > c->D || out_size > c->D - out_offset) return TFDC_ERR_CORRUPT;
  if ((rc = fb_get_buffer(&c->model, buffer_index, &fbb))) return rc;
  if (buffer_index == c->section_buffer) return TFDC_ERR_CORRUPT;
  if (fbb.offset != out_offset || fbb.size != out_size || fbb.has_data) return TFDC_ERR_CORRUPT;

  /* Codebook. */
  p = RECORD_FIXED;
  cb_bytes = (uint64_t)K * (cb_enc ? 2 : es);
  if (cb_bytes > body - p) return TFDC_ERR_TRUNCATED;
  if (cb_enc == 1) {
    for (entry = 0; entry < K; entry++) {
      uint32_t f = half_to_single(ld16(rec + p + 2 * entry));
      uint8_t *d = w->codebook + 4 * entry; /* stored little-endian, like the file */
      d[0] = (uint8_t)f;
      d[1] = (uint8_t)(f >> 8);
      d[2] = (uint8_t)(f >> 16);
      d[3] = (uint8_t)(f >> 24);
    }
  } else if (K) {
    memcpy(w->codebook, rec + p, (size_t)cb_bytes);
  }
  p += cb_bytes;

  /* Values. */
  memset(&vsi, 0, sizeof vsi);
  if (value_mode == 0) {
    if ((rc = parse_stream(rec, body, &p, w->tables, c->num_tables, K, &vsi))) return rc;
    if (vsi.count != nnz) return TFDC_ERR_CORRUPT;
  } else {
    if (nnz > (body - p) / es) return TFDC_ERR_TRUNCATED;
    raw = rec + p;
    p += nnz * es;
  }
  /* Gaps. */
  memset(&gsi, 0, sizeof gsi);
  gsi.table = -1;
  if (position_mode == 1) {
    if ((rc = parse_stream(rec, body, &p, w->tables, c->num_tables, G, &gsi))) return rc;
    if (nnz == 0 ? gsi.count != 0 : gsi.count > N || gsi.count < nnz) return TFDC_ERR_CORRUPT;
  }
  if (p != body) return TFDC_ERR_CORRUPT;

  /* Decode. Zero bytes between the previous record and this one; dense
   * records write every element, sparse row-major ones zero as they go,
   * column-major sparse ones jump around and are zero-filled first. */
  memset(out + *prev_end, 0, (size_t)(out_offset - *prev_end));
  if (position_mode == 1 && scan == 1) memset(out + out_offset, 0, (size_t)out_size);
  get_htab(w, &w->vals, w->tables, vsi.table);
  get_htab(w, &w->gaps, w->tables, gsi.table);
  stream_open(&vs, &vsi, w->tables, &w->vals, in_end);
  stream_open(&gs, &gsi, w->tables, &w->gaps, in_end);
  if (position_mode == 0) {
    rc = decode_dense(w, &vs, raw, (int)value_mode, out + out_offset, N, es, (int)scan, scan_rows);
  } else {
    rc = decode_sparse(w, &vs, &gs, raw, (int)value_mode, out + out_offset, N, es, (int)scan, scan_rows,
                       nnz, G);
  }
  if (rc) return rc;
  if (value_mode == 0 && vs.left != 0) return TFDC_ERR_CORRUPT;

  *prev_end = out_offset + out_size;
  *pos += rsize;
  return TFDC_OK;
}

static void workspace_free(workspace *w) {
  free(w->tables);
  free(w->vals.e);
  free(w->gaps.e);
  free(w->sorted);
  free(w->codebook);
  free(w->sym_a);
  free(w->sym_b);
}

int tfdc_decode(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap) {
  container c;
  workspace w;
  uint64_t pos = HEADER_SIZE, prev_end = 0, targets = 0;
  uint32_t r;
  int rc;

  if (!in || !out) return TFDC_ERR_ARGUMENT;
  if ((rc = check_container(in, in_len, &c))) return rc;
  if (c.D > (uint64_t)SIZE_MAX) return TFDC_ERR_TOO_LARGE;
  if (c.D > (uint64_t)out_cap) return TFDC_ERR_OUTPUT_SIZE;
  {
    uintptr_t a = (uintptr_t)in, b = (uintptr_t)out;
    if (b < a ? a - b < c.D : b - a < in_len) return TFDC_ERR_ARGUMENT; /* overlap */
  }

  memset(&w, 0, sizeof w);
  w.tables = (code_table *)malloc(sizeof(code_table) * (c.num_tables ? c.num_tables : 1));
  w.vals.e = (uint32_t *)malloc(sizeof(uint32_t) * HTAB_ENTRIES);
  w.gaps.e = (uint32_t *)malloc(sizeof(uint32_t) * HTAB_ENTRIES);
  w.sorted = (uint16_t *)malloc(sizeof(uint16_t) * MAX_ALPHABET);
  w.codebook = (uint8_t *)malloc(8u * MAX_ALPHABET);
  w.sym_a = (uint16_t *)malloc(sizeof(uint16_t) * CHUNK);
  w.sym_b = (uint16_t *)malloc(sizeof(uint16_t) * CHUNK);
  w.vals.built_for = w.gaps.built_for = -1;
  if (!w.tables || !w.vals.e || !w.gaps.e || !w.sorted || !w.codebook || !w.sym_a || !w.sym_b) {
    workspace_free(&w);
    return TFDC_ERR_NOMEM;
  }

  rc = parse_tables(&c, w.tables, &pos);
  if (rc == TFDC_OK) {
    memcpy(out, in, in_len);
    /* The tail is zero-filled piece by piece, just before each record is
     * decoded into it (see decode_record), so that each output byte is
     * written while its cache line is still hot rather than in a separate
     * pass over the whole model. */
    prev_end = in_len;
    for (r = 0; r < c.num_records && rc == TFDC_OK; r++)
      rc = decode_record(&c, &w, &pos, &prev_end, out, in + in_len);
    if (rc == TFDC_OK && pos != c.Z - 4) rc = TFDC_ERR_CORRUPT;
    if (rc == TFDC_OK) memset(out + prev_end, 0, (size_t)(c.D - prev_end)); /* after the last record */
  }
  /* Every Buffer that points past the file (offset > 1) other than the
   * section must be a record's target; targets are distinct because record
   * offsets strictly increase, so counting suffices. */
  if (rc == TFDC_OK) {
    uint32_t b;
    for (b = 0; b < c.model.num_buffers && rc == TFDC_OK; b++) {
      fb_buffer fbb;
      rc = fb_get_buffer(&c.model, b, &fbb);
      if (rc == TFDC_OK && b != c.section_buffer && fbb.offset > 1) targets++;
    }
    if (rc == TFDC_OK && targets != c.num_records) rc = TFDC_ERR_CORRUPT;
  }
  workspace_free(&w);
  return rc;
}
