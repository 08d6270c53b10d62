/*
 * test_decode.c - C tests of tfdc_decode.c: format 1 files, format 2.1 /
 * 2.2 files with kind 3 and kind 4 (rANS) tables and format 2.3 files with
 * patches, made by the independent builder in tfdc_builder.h, and the format 2 files of the fuzz corpus
 * (written by tfdc's packer: tools/make_v2_corpus.py), decoded, truncated,
 * bit-flipped and with their meta stream mutated and re-deflated.
 * C99 + POSIX (opendir) + zlib; run by CTest (also under ASan/UBSan and, for
 * ARM, under qemu).
 *
 *   test_decode [CORPUS_DIR]            run all tests
 *   test_decode --write DIR             also write the built files to DIR (seed corpus)
 *   test_decode --bench [N] [REPEATS]   time kind 3 / 4 decoding of N smooth int8 symbols
 */
#define _POSIX_C_SOURCE 200809L
#define _FILE_OFFSET_BITS 64 /* 32-bit readdir fails on 64-bit inode numbers otherwise */
#include <dirent.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tfdc_builder.h"
#include "tfdc_decode.h"
#include "tfdc_dictionary.h"

static int failures = 0;
static const char *write_dir = NULL;
#define CHECK(cond, ...)                                          \
  do {                                                            \
    if (!(cond)) {                                                \
      failures++;                                                 \
      fprintf(stderr, "%s:%d: FAILED %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                               \
      fprintf(stderr, "\n");                                      \
    }                                                             \
  } while (0)

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static void maybe_write(const char *name, const bytes *f) {
  char path[1024];
  FILE *fp;
  if (!write_dir) return;
  snprintf(path, sizeof path, "%s/%s.tflite", write_dir, name);
  fp = fopen(path, "wb");
  if (fp) { fwrite(f->d, 1, f->n, fp); fclose(fp); }
}

static void maybe_write_v2(const char *name, const bytes *f);

/* Decodes `f` and checks every record's bytes, the copied prefix and the
 * zero fill. Returns the status. */
static int decode_and_check(const char *name, const bytes *f, const brecord *recs, uint32_t nrec,
                            uint64_t D) {
  uint64_t n = 0, covered = f->n;
  uint8_t *out;
  uint32_t i;
  int rc = tfdc_decoded_size(f->d, f->n, &n);
  CHECK(rc == TFDC_OK, "%s: decoded_size -> %s", name, tfdc_strerror(rc));
  if (rc) return rc;
  CHECK(n == D, "%s: D %llu != %llu", name, (unsigned long long)n, (unsigned long long)D);
  CHECK(tfdc_is_packed(f->d, f->n) == 1, "%s: is_packed", name);
  out = (uint8_t *)malloc(n);
  memset(out, 0xAB, n);
  rc = tfdc_decode(f->d, f->n, out, n);
  CHECK(rc == TFDC_OK, "%s: decode -> %s", name, tfdc_strerror(rc));
  if (rc == TFDC_OK) {
    CHECK(memcmp(out, f->d, f->n) == 0, "%s: prefix differs", name);
    for (i = 0; i < nrec; i++) {
      uint64_t j, sz = recs[i].N * recs[i].es, o = recs[i].out_offset;
      for (j = covered; j < o; j++) if (out[j]) break;
      CHECK(j == o, "%s: nonzero fill before record %u", name, i);
      CHECK(memcmp(out + o, recs[i].elems, sz) == 0, "%s: record %u bytes differ", name, i);
      covered = o + sz;
    }
    for (; covered < n; covered++) if (out[covered]) break;
    CHECK(covered == n, "%s: nonzero tail", name);
  }
  /* A too-small output buffer is refused. */
  CHECK(tfdc_decode(f->d, f->n, out, n - 1) == TFDC_ERR_OUTPUT_SIZE, "%s: small out", name);
  free(out);
  maybe_write(name, f);
  return rc;
}

static uint8_t *random_tensor(uint64_t N, unsigned es, uint32_t distinct, double density,
                              int geometric) {
  uint8_t *e = (uint8_t *)calloc(N * es + 1, 1);
  uint8_t *vals = (uint8_t *)malloc((size_t)distinct * es);
  uint64_t t;
  uint32_t k;
  unsigned b;
  for (k = 0; k < distinct; k++) {
    for (b = 0; b < es; b++) vals[k * es + b] = (uint8_t)rnd();
    vals[k * es] |= 1; /* never the zero element */
  }
  for (t = 0; t < N; t++) {
    if ((double)(rnd() % 1000000) / 1e6 >= density) continue;
    if (geometric) {
      k = 0;
      while (k + 1 < distinct && (rnd() & 1)) k++;
    } else {
      k = (uint32_t)(rnd() % distinct);
    }
    memcpy(e + t * es, vals + (size_t)k * es, es);
  }
  free(vals);
  return e;
}

/* §5 of FORMAT.md, checked byte for byte through the builder, then decoded. */
static void test_worked_example(void) {
  static const float x[8] = {0, 0.5f, 0, 0, -1, 0.5f, 0, 0};
  brecord r;
  bytes f;
  uint64_t D;
  size_t S;
  static const uint8_t val_table[9] = {0, 1, 0, 0, 2, 0, 0, 0, 0x11};
  static const uint8_t gap_table[10] = {0, 2, 0, 0, 4, 0, 0, 0, 0x21, 0x02};
  memset(&r, 0, sizeof r);
  r.elems = (const uint8_t *)x;
  static const uint8_t gap_len[4] = {1, 2, 2, 0};
  r.N = 8; r.es = 4; r.position_mode = 1; r.G = 4; r.scan_rows = 1; r.block = 4096;
  r.gap_lengths = gap_len;
  f = build_packed(&r, 1, &D);
  S = builder_section_offset(&f);
  /* The builder's codebook is in first-seen order: [0.5, -1]; symbols 0,1,0
   * with lengths (1,1) -> value byte 0x40. The gap stream is §5's exactly. */
  CHECK(memcmp(f.d + S + 48 + 9, gap_table, 10) == 0, "gap table bytes as in FORMAT.md §5");
  CHECK(memcmp(f.d + S + 48, val_table, 9) == 0, "value table bytes as in FORMAT.md §5");
  decode_and_check("worked_example", &f, &r, 1, D);
  free(f.d);
}

typedef struct {
  const char *name;
  uint64_t N;
  unsigned es;
  int value_mode, position_mode, scan;
  uint32_t scan_rows, G, block, distinct;
  double density;
  int geometric, force_kind0;
} config;

static void run_config(const config *c) {
  brecord r;
  bytes f;
  uint64_t D;
  memset(&r, 0, sizeof r);
  r.elems = random_tensor(c->N, c->es, c->distinct, c->density, c->geometric);
  r.N = c->N; r.es = c->es; r.value_mode = c->value_mode; r.position_mode = c->position_mode;
  r.scan = c->scan; r.scan_rows = c->scan_rows; r.G = c->G; r.block = c->block;
  r.force_kind0 = c->force_kind0;
  f = build_packed(&r, 1, &D);
  decode_and_check(c->name, &f, &r, 1, D);
  free(f.d);
  free((void *)r.elems);
}

static void test_configs(void) {
  static const config cs[] = {
      /* name                N     es vm pm sc rows  G    block distinct dens geo k0 */
      {"dense_f32_5bit", 20000, 4, 0, 0, 0, 1, 0, 4096, 32, 1.0, 0, 0},
      {"dense_f32_geo", 30000, 4, 0, 0, 0, 1, 0, 1000, 40, 1.0, 1, 0},
      {"dense_i8", 5001, 1, 0, 0, 0, 1, 0, 333, 256, 1.0, 0, 0},
      {"dense_f16", 4097, 2, 0, 0, 0, 1, 0, 4096, 17, 1.0, 1, 0},
      {"dense_f64_colmajor", 6000, 8, 0, 0, 1, 40, 0, 512, 9, 1.0, 0, 0},
      {"dense_colmajor_f32", 3 * 7 * 64, 4, 0, 0, 1, 21, 0, 100, 33, 0.7, 0, 0},
      {"sparse_f32_8bit", 50000, 4, 0, 1, 0, 1, 256, 4096, 256, 0.1, 0, 0},
      {"sparse_geo_long_codes", 40000, 4, 0, 1, 0, 1, 64, 4096, 200, 0.3, 1, 0},
      {"sparse_fillers_G2", 3000, 4, 0, 1, 0, 1, 2, 50, 5, 0.05, 0, 0},
      {"sparse_fillers_G4", 8000, 4, 0, 1, 1, 80, 4, 77, 5, 0.02, 0, 0},
      {"sparse_colmajor", 9 * 32 * 16, 4, 0, 1, 1, 288, 32, 4096, 16, 0.2, 0, 0},
      {"sparse_raw_values", 7000, 4, 1, 1, 0, 1, 16, 4096, 1000, 0.25, 0, 0},
      {"dense_raw_values", 999, 2, 1, 0, 0, 1, 0, 4096, 1000, 1.0, 0, 0},
      {"dense_raw_colmajor", 1000, 1, 1, 0, 1, 10, 0, 4096, 200, 1.0, 0, 0},
      {"sparse_empty", 1000, 4, 0, 1, 0, 1, 16, 4096, 3, 0.0, 0, 0},
      {"dense_single_value_kind1", 5000, 4, 0, 0, 0, 1, 0, 4096, 1, 1.0, 0, 0},
      {"dense_single_value_kind0", 5000, 4, 0, 0, 0, 1, 0, 64, 1, 1.0, 0, 1},
      {"sparse_all_nonzero", 4096, 4, 0, 1, 0, 1, 8, 4096, 7, 1.0, 0, 0},
      {"block_one", 300, 4, 0, 0, 0, 1, 0, 1, 5, 1.0, 0, 0},
      {"sparse_G32768", 100000, 4, 0, 1, 0, 1, 32768, 4096, 4, 0.001, 0, 0},
  };
  size_t i;
  for (i = 0; i < sizeof cs / sizeof cs[0]; i++) run_config(&cs[i]);
}

/* binary16 codebook: signed zeros, subnormals, Inf and NaN payloads survive. */
static void test_half_codebook(void) {
  static const uint16_t half[] = {0x3c00, 0xbc00, 0x8000, 0x0001, 0x03ff, 0x8200, 0x7c00,
                                  0xfc00, 0x7e01, 0x7bff, 0x0400, 0x3555};
  uint32_t K = sizeof half / sizeof half[0], i;
  uint64_t N = 5000, D;
  uint8_t *e = (uint8_t *)calloc(N, 4);
  brecord r;
  bytes f;
  for (i = 0; i < N; i++) {
    uint32_t bits;
    if (rnd() % 3 == 0) continue;
    bits = test_half_to_float_bits(half[rnd() % K]);
    memcpy(e + 4 * i, &bits, 4);
  }
  memset(&r, 0, sizeof r);
  r.elems = e; r.N = N; r.es = 4; r.position_mode = 1; r.G = 16; r.scan_rows = 1;
  r.block = 700; r.cb_enc = 1; r.half_cb = half; r.half_K = K;
  f = build_packed(&r, 1, &D);
  decode_and_check("half_codebook", &f, &r, 1, D);
  free(f.d);
  free(e);
}

/* Several records in one file, sharing nothing. */
static void test_multi_record(bytes *keep, uint64_t *keep_D) {
  brecord r[4];
  bytes f;
  uint64_t D;
  int i;
  memset(r, 0, sizeof r);
  for (i = 0; i < 4; i++) {
    r[i].N = 1000 + 517 * (uint64_t)i;
    r[i].es = i == 2 ? 1 : 4;
    r[i].elems = random_tensor(r[i].N, r[i].es, 8 + 40 * (uint32_t)i, i % 2 ? 0.2 : 1.0, i == 3);
    r[i].position_mode = i % 2;
    r[i].G = i % 2 ? 32 : 0;
    r[i].scan_rows = 1;
    r[i].block = 256;
  }
  f = build_packed(r, 4, &D);
  decode_and_check("multi_record", &f, r, 4, D);
  for (i = 0; i < 4; i++) free((void *)r[i].elems);
  *keep = f;
  *keep_D = D;
}

static int decode_status(const bytes *f, uint64_t cap) {
  uint8_t *out = (uint8_t *)malloc(cap ? cap : 1);
  int rc = tfdc_decode(f->d, f->n, out, cap);
  free(out);
  return rc;
}

static bytes copy_of(const bytes *f) {
  bytes c = {0};
  b_put(&c, f->d, f->n);
  return c;
}

/* Every truncation and every single-bit flip is rejected (the CRCs cover
 * every byte), and never crashes (run under ASan/UBSan/valgrind). */
static void test_truncation_and_bitflips(const bytes *f, uint64_t D) {
  size_t n, i;
  uint64_t got;
  for (n = 0; n < f->n; n += (n < 64 ? 1 : 7)) {
    CHECK(tfdc_decoded_size(f->d, n, &got) != TFDC_OK, "truncated to %zu accepted", n);
  }
  for (i = 0; i < f->n; i += 3) {
    bytes c = copy_of(f);
    c.d[i] ^= (uint8_t)(1u << (i % 8));
    CHECK(decode_status(&c, D + 64) < 0, "bit flip at %zu accepted", i);
    free(c.d);
  }
}

/* Edits with the CRCs recomputed must still never crash; a few specific ones
 * must produce specific errors. */
static void test_edits_with_fixed_crcs(const bytes *f, uint64_t D) {
  size_t S = builder_section_offset(f), i;
  bytes c;
  for (i = S; i < f->n - 4; i++) {
    unsigned k;
    for (k = 0; k < 3; k++) {
      static const uint8_t x[3] = {0x01, 0x80, 0xFF};
      c = copy_of(f);
      c.d[i] ^= x[k];
      fix_crcs(&c);
      (void)decode_status(&c, D + 1024); /* any status, no crash */
      free(c.d);
    }
  }
  /* version 2 */
  c = copy_of(f); c.d[S + 4] = 2; fix_crcs(&c);
  CHECK(decode_status(&c, D) == TFDC_ERR_VERSION, "version 2");
  free(c.d);
  /* flags */
  c = copy_of(f); c.d[S + 12] = 1; fix_crcs(&c);
  CHECK(decode_status(&c, D) == TFDC_ERR_CORRUPT, "flags");
  free(c.d);
  /* a stale CRC */
  c = copy_of(f); c.d[S + 30] ^= 1;
  CHECK(decode_status(&c, D) == TFDC_ERR_CHECKSUM, "checksum");
  free(c.d);
  /* trailing bytes (e.g. an already decoded file) */
  c = copy_of(f); b_u8(&c, 0);
  CHECK(decode_status(&c, D + 16) == TFDC_ERR_CORRUPT, "trailing byte");
  free(c.d);
  /* the metadata name changed, the section still ends the file: a damaged
   * key (CORRUPT, §3.2), not a plain model an app would pass on */
  c = copy_of(f);
  {
    size_t j;
    for (j = 0; j + 7 <= S; j++) if (memcmp(c.d + j, "tfdc.v1", 7) == 0) { c.d[j + 6] = '3'; break; }
  }
  CHECK(tfdc_is_packed(c.d, c.n) == 0, "renamed metadata still packed");
  CHECK(decode_status(&c, D) == TFDC_ERR_CORRUPT, "renamed metadata");
  free(c.d);
  /* not a flatbuffer at all */
  c = copy_of(f); memcpy(c.d + 4, "XXXX", 4);
  CHECK(decode_status(&c, D) == TFDC_ERR_FLATBUFFER, "bad identifier");
  free(c.d);
  /* a nonzero padding bit in the last byte of a segment: find a record via a
   * tiny file whose last segment byte is known */
  CHECK(tfdc_decode(NULL, 0, NULL, 0) == TFDC_ERR_ARGUMENT, "NULL");
  { /* empty input, as tfdc_decode.h says: (NULL, 0) a bad argument, "" no flatbuffer */
    uint64_t n;
    static const uint8_t empty[1] = {0};
    CHECK(tfdc_decoded_size(NULL, 0, &n) == TFDC_ERR_ARGUMENT, "decoded_size(NULL, 0)");
    CHECK(tfdc_decoded_size(empty, 0, &n) == TFDC_ERR_FLATBUFFER, "decoded_size(\"\", 0)");
  }
  CHECK(strlen(tfdc_strerror(-999)) > 0, "strerror");
}

/* A padding bit set after the last code is a format error. */
static void test_padding_bits(void) {
  static const float x[8] = {0, 0.5f, 0, 0, -1, 0.5f, 0, 0};
  brecord r;
  bytes f;
  uint64_t D;
  size_t j;
  static const uint8_t gap_len[4] = {1, 2, 2, 0};
  memset(&r, 0, sizeof r);
  r.elems = (const uint8_t *)x;
  r.N = 8; r.es = 4; r.position_mode = 1; r.G = 4; r.scan_rows = 1; r.block = 4096;
  r.gap_lengths = gap_len;
  f = build_packed(&r, 1, &D);
  /* the gap segment is the byte 0xB0 (bits 10 11 0 + 3 padding bits) */
  for (j = f.n - 5; j > 0; j--) if (f.d[j] == 0xB0) break;
  CHECK(j > 0, "gap segment byte found");
  f.d[j] |= 0x01;
  fix_crcs(&f);
  CHECK(decode_status(&f, D) == TFDC_ERR_CORRUPT, "padding bit set");
  free(f.d);
}

/* ---- format 2: the corpus files tfdc's packer wrote ---------------------- */

static int read_whole(const char *path, bytes *b) {
  FILE *fp = fopen(path, "rb");
  uint8_t buf[4096];
  size_t got;
  memset(b, 0, sizeof *b);
  if (!fp) return 0;
  while ((got = fread(buf, 1, sizeof buf, fp)) > 0) b_put(b, buf, got);
  fclose(fp);
  return 1;
}

static unsigned put_varint(uint8_t *p, uint64_t v) {
  unsigned n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

static uint64_t get_varint(const uint8_t *p, size_t *pos) {
  uint64_t v = 0;
  unsigned shift = 0;
  while (p[*pos] & 0x80) {
    v |= (uint64_t)(p[(*pos)++] & 0x7f) << shift;
    shift += 7;
  }
  v |= (uint64_t)p[(*pos)++] << shift;
  return v;
}

/* The parts of a file with tfdc's 120-byte stub (FORMAT.md §9). */
typedef struct {
  uint64_t flags, C, M, F, D;
  uint8_t *meta;
  const uint8_t *payload;
  size_t payload_len;
} v2_parts;

static int v2_split(const bytes *f, v2_parts *p) {
  size_t pos = 120 + 8;
  z_stream z;
  int ret;
  if (f->n < 132 || memcmp(f->d + 120, "TFDC", 4) != 0) return 0;
  p->flags = get_varint(f->d, &pos);
  p->C = get_varint(f->d, &pos);
  p->M = get_varint(f->d, &pos);
  p->F = get_varint(f->d, &pos);
  p->D = get_varint(f->d, &pos);
  p->meta = (uint8_t *)malloc(p->M + 1);
  memset(&z, 0, sizeof z);
  inflateInit2(&z, -15);
  inflateSetDictionary(&z, tfdc_dictionary, TFDC_DICTIONARY_SIZE);
  z.next_in = f->d + pos;
  z.avail_in = (uInt)p->C;
  z.next_out = p->meta;
  z.avail_out = (uInt)p->M + 1;
  ret = inflate(&z, Z_FINISH);
  inflateEnd(&z);
  p->payload = f->d + pos + p->C;
  p->payload_len = f->n - 4 - (pos + p->C);
  return ret == Z_STREAM_END && z.total_out == p->M;
}

/* A file from parts: tfdc's stub (the first 120 bytes of `orig`) with the
 * new section size, the header (orig's magic and versions, then `flags`),
 * the meta stream deflated as the packer does (level 9, memLevel 9, the
 * dictionary), the payload, the CRC. */
/* DEFLATE level of v2_join: 9 as the packer, 0 for the stored-block twins
 * of fuzz seeds (mutations then reach the tables instead of breaking the
 * DEFLATE stream), 6 for the meta-stream mutants of test_v2_file (level 9
 * with the dictionary made the 68,000 mutants take 30 s, level 6 takes 2 s;
 * the decoder inflates either with the same code). */
static int v2_join_level = 9;

static bytes v2_join(const bytes *orig, uint64_t flags, const uint8_t *meta, uint64_t M, uint64_t F,
                     uint64_t D, const uint8_t *payload, size_t payload_len) {
  bytes out = {0};
  uint8_t hdr[64], *def = (uint8_t *)malloc(M + 64 + M / 8);
  unsigned h = 8;
  z_stream z;
  uint64_t C, Z;
  memset(&z, 0, sizeof z);
  deflateInit2(&z, v2_join_level, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY);
  deflateSetDictionary(&z, tfdc_dictionary, TFDC_DICTIONARY_SIZE);
  z.next_in = (Bytef *)(uintptr_t)meta;
  z.avail_in = (uInt)M;
  z.next_out = def;
  z.avail_out = (uInt)(M + 64 + M / 8);
  deflate(&z, Z_FINISH);
  C = z.total_out;
  deflateEnd(&z);
  memcpy(hdr, orig->d + 120, 8);
  h += put_varint(hdr + h, flags);
  h += put_varint(hdr + h, C);
  h += put_varint(hdr + h, M);
  h += put_varint(hdr + h, F);
  h += put_varint(hdr + h, D);
  Z = h + C + payload_len + 4;
  b_put(&out, orig->d, 120);
  b_set32(&out, 104, (uint32_t)Z); /* the stub's Buffer.size (u64, high half 0) */
  b_put(&out, hdr, h);
  b_put(&out, def, (size_t)C);
  b_put(&out, payload, payload_len);
  b_u32(&out, ref_crc32(out.d, out.n));
  free(def);
  return out;
}

/* A format 2 file built here, and its twin with the meta stream in stored
 * DEFLATE blocks (NAME_stored), as fuzz seeds. */
static void maybe_write_v2(const char *name, const bytes *f) {
  v2_parts p;
  char stored[512];
  bytes g;
  if (!write_dir) return;
  maybe_write(name, f);
  if (!v2_split(f, &p)) return;
  v2_join_level = 0;
  g = v2_join(f, p.flags, p.meta, p.M, p.F, p.D, p.payload, p.payload_len);
  v2_join_level = 9;
  snprintf(stored, sizeof stored, "%s_stored", name);
  maybe_write(stored, &g);
  free(g.d);
  free(p.meta);
}

static int v2_files = 0, v2_mutants = 0, v2_mutants_ok = 0, v2_size_t_checked = 0;
/* Every meta byte is mutated unless TFDC_TEST_META_STRIDE=k asks for every
 * k-th one (tests/test_native_arm.py: under qemu each mutant costs ~40x). */
static uint64_t meta_stride = 1;

static void test_v2_file(const char *name, const bytes *f) {
  uint64_t n = 0, got;
  uint8_t *out;
  size_t i;
  int rc = tfdc_decoded_size(f->d, f->n, &n);
  v2_parts p;
  CHECK(rc == TFDC_OK, "%s: decoded_size -> %s", name, tfdc_strerror(rc));
  if (rc) return;
  CHECK(tfdc_is_packed(f->d, f->n) == 1, "%s: is_packed", name);
  out = (uint8_t *)malloc(n + 1);
  memset(out, 0xAB, n + 1);
  rc = tfdc_decode(f->d, f->n, out, n);
  CHECK(rc == TFDC_OK, "%s: decode -> %s", name, tfdc_strerror(rc));
  CHECK(out[n] == 0xAB, "%s: wrote past the decoded size", name);
  CHECK(n == 0 || tfdc_decode(f->d, f->n, out, n - 1) == TFDC_ERR_OUTPUT_SIZE, "%s: short output", name);
  CHECK(tfdc_decoded_size_limit(f->d, f->n, n - 1, &got) == TFDC_ERR_TOO_LARGE, "%s: limit", name);
  CHECK(tfdc_decode_limit(f->d, f->n, out, n, UINT64_MAX) == TFDC_OK, "%s: no limit", name);
  /* The decoded file is a standard model: no section key. */
  CHECK(tfdc_decode(out, n, out + 0, 0) == TFDC_ERR_NOT_PACKED || n < 8, "%s: decoded not packed", name);
  /* Truncations and bit flips (the CRC covers every byte). */
  for (i = 0; i < f->n; i += 5) {
    bytes c = copy_of(f);
    CHECK(tfdc_decoded_size(f->d, i, &got) != TFDC_OK, "%s: truncated to %zu accepted", name, i);
    c.d[i] ^= (uint8_t)(1u << (i % 8));
    CHECK(decode_status(&c, n + 64) < 0, "%s: bit flip at %zu accepted", name, i);
    free(c.d);
  }
  /* Every meta byte after the inner flatbuffer changed, the file re-signed:
   * any status, never a crash, an overrun or a wrong size. */
  if (v2_split(f, &p)) {
    uint64_t pos;
    v2_join_level = 6;
    if (!v2_size_t_checked) {
      /* A decoded size above SIZE_MAX is TOO_LARGE from the size query too
       * (32-bit: it returned OK, and malloc(n) truncated it), with any limit. */
      const uint64_t big = (1ull << 32) + 4096;
      bytes c = v2_join(f, p.flags, p.meta, p.M, p.F, big, p.payload, p.payload_len);
      uint64_t size = 0;
      rc = tfdc_decoded_size_limit(c.d, c.n, UINT64_MAX, &size);
      if (sizeof(size_t) < 8)
        CHECK(rc == TFDC_ERR_TOO_LARGE, "%s: D = 2^32 + 4096 on 32-bit -> %s", name, tfdc_strerror(rc));
      else
        CHECK(rc == TFDC_OK && size == big, "%s: D = 2^32 + 4096 -> %s", name, tfdc_strerror(rc));
      free(c.d);
      v2_size_t_checked = 1;
    }
    for (pos = p.F; pos < p.M; pos += meta_stride) {
      unsigned k;
      for (k = 0; k < 3; k++) {
        static const uint8_t x[3] = {0x01, 0x80, 0xFF};
        bytes c;
        uint8_t *o;
        uint64_t dn = 0;
        p.meta[pos] ^= x[k];
        c = v2_join(f, p.flags, p.meta, p.M, p.F, p.D, p.payload, p.payload_len);
        p.meta[pos] ^= x[k];
        v2_mutants++;
        if (tfdc_decoded_size(c.d, c.n, &dn) == TFDC_OK) {
          o = (uint8_t *)malloc(dn + 1);
          o[dn] = 0x5A;
          if (tfdc_decode(c.d, c.n, o, dn) == TFDC_OK) v2_mutants_ok++;
          CHECK(o[dn] == 0x5A, "%s: mutant wrote past its decoded size", name);
          free(o);
        }
        free(c.d);
      }
    }
    v2_join_level = 9;
    free(p.meta);
  }
  v2_files++;
  free(out);
}

static void test_v2_corpus(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char path[4096];
  if (!d) {
    CHECK(d != NULL, "cannot open corpus directory %s", dir);
    return;
  }
  while ((e = readdir(d)) != NULL) {
    bytes f;
    size_t len = strlen(e->d_name);
    if (strncmp(e->d_name, "v2_", 3) != 0 || len < 7 || strcmp(e->d_name + len - 7, ".tflite") != 0)
      continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (!read_whole(path, &f)) continue;
    test_v2_file(e->d_name, &f);
    free(f.d);
  }
  closedir(d);
  CHECK(v2_files >= 30, "only %d format 2 corpus files in %s", v2_files, dir);
  printf("format 2: %d corpus files, %d meta-stream mutants (%d decoded)\n", v2_files, v2_mutants,
         v2_mutants_ok);
}

/* ---- format 2.1: kind 3 (rANS) streams in files built here -------------- */

/* tfdc's 120-byte stub of FORMAT.md §9 (section at 120; its size is patched
 * by v2_join), then the section prefix: magic, version 2.1. */
static const uint8_t k3_stub[128] = {
    0x20, 0, 0, 0, 'T', 'F', 'L', '3', 0, 0, 0, 0, 0, 0,
    0x12, 0, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0, 0, 0, 0x04, 0, /* Model vtable */
    0x12, 0, 0, 0, 0x08, 0, 0, 0, 0x28, 0, 0, 0,                       /* Model */
    0x01, 0, 0, 0, 0x0c, 0, 0, 0, 0, 0,                                /* metadata vector */
    0x06, 0, 0x08, 0, 0x04, 0, 0x06, 0, 0, 0, 0x04, 0, 0, 0,           /* Metadata */
    0x07, 0, 0, 0, 't', 'f', 'd', 'c', '.', 'v', '2', 0,
    0x01, 0, 0, 0, 0x10, 0, 0, 0, 0, 0,                                /* buffers vector */
    0x0a, 0, 0x14, 0, 0, 0, 0x0c, 0, 0x04, 0, 0x0a, 0, 0, 0,           /* Buffer */
    0, 0, 0, 0, 0, 0, 0, 0, 120, 0, 0, 0, 0, 0, 0, 0,                  /* size Z, offset S */
    'T', 'F', 'D', 'C', 2, 0, 1, 0};

typedef struct {
  const char *name;
  unsigned eb;      /* element bits: 2, 4, 8, 16 or 32 */
  int sparse;       /* 0: dense, planes; 1: sparse, codebook values */
  uint64_t N, cols; /* elements; row length of the smooth 2-D signal */
  uint64_t R;       /* scan_rows */
  unsigned prec, classes, shift, lag1, lag2, G;
  uint64_t block;
  double density;   /* sparse: fraction of nonzero elements */
  unsigned spread;  /* int8 range of the signal (|value| <= spread) */
} k3config;

/* What to break in a built file (0: nothing): the header flags, a field or
 * two, or a class table or map of table 0, or segment 0 of the first stream. */
enum { SEG_OK, SEG_SHORT, SEG_LONG, SEG_3_BYTES, SEG_STATE_LOW, SEG_STATE_HIGH, SEG_FLIP };
/* The segment breaks of kinds 3 and 4 and the status each must get. */
static const struct { int seg, status; const char *what; } SEG_CASES[] = {
    {SEG_SHORT, TFDC_ERR_TRUNCATED, "segment one byte short"},
    {SEG_LONG, TFDC_ERR_CORRUPT, "segment with a byte left over"},
    {SEG_3_BYTES, TFDC_ERR_TRUNCATED, "segment_bytes 3"}, /* shorter than the state: §5.2 */
    {SEG_STATE_LOW, TFDC_ERR_CORRUPT, "initial state L - 1"},
    {SEG_STATE_HIGH, TFDC_ERR_CORRUPT, "initial state >= 2^31"},
};
typedef struct {
  uint64_t flags;
  int field;
  uint64_t value;
  int bad_class, seg;
  int field2;
  uint64_t value2;
} k3edit;

static const k3edit k3_none = {1, 0, 0, RT_OK, SEG_OK, 0, 0};
static const k3edit k4_none = {3, 0, 0, RT_OK, SEG_OK, 0, 0}; /* kind 4 needs flags bit 1 */

/* Kind 4 groups (§5.4) of every stream of a built file; NULL: kind 3. The
 * maps are col_group[q] = q mod Gc and row_group[r] = r mod Gr, or with
 * `scramble` a hash of q and r modulo the group counts. */
typedef struct {
  uint32_t D, P, Gc, Gr;
  int scramble;
  uint32_t *col_group, *row_group; /* filled by k4_maps */
} k4groups;

static void k4_maps(k4groups *g) {
  uint32_t q;
  g->col_group = (uint32_t *)malloc(sizeof(uint32_t) * g->D);
  g->row_group = (uint32_t *)malloc(sizeof(uint32_t) * g->P);
  for (q = 0; q < g->D; q++) g->col_group[q] = (g->scramble ? (q * 2654435761u) >> 7 : q) % g->Gc;
  for (q = 0; q < g->P; q++) g->row_group[q] = (g->scramble ? (q * 40503u + 7u) >> 3 : q) % g->Gr;
}

/* Set: a sparse file's gap stream is kind 3 even where its values are kind 4
 * (a file with both kinds, flags 3). */
static int k4_values_only = 0;

static unsigned bits_for(uint64_t alphabet) {
  unsigned w = 1;
  while ((1ull << w) < alphabet) w++;
  return w;
}

/* Appends one kind 3 (g NULL) or kind 4 stream: its table to `tabs`, its
 * descriptor to `rec`, its segments to `pay`; the first stream of a file
 * takes the edits. */
static void k3_stream(const k3config *c, const k4groups *g, const k3edit *e, int first_stream,
                      const uint16_t *sym, uint64_t count, uint64_t alphabet, bytes *tabs,
                      uint64_t *ntab, bytes *rec, bytes *pay) {
  rtable t;
  uint64_t start;
  memset(&t, 0, sizeof t);
  t.width = bits_for(alphabet);
  t.prec = c->prec > t.width ? c->prec : t.width;
  if (t.prec > 15) t.prec = 15;
  t.lag1 = c->lag1;
  t.lag2 = c->lag2;
  t.shift = c->shift;
  t.classes = c->classes;
  if (g) {
    t.D = g->D;
    t.P = g->P;
    t.Gc = g->Gc;
    t.Gr = g->Gr;
    t.col_group = g->col_group;
    t.row_group = g->row_group;
  }
  rt_fit(&t, sym, count, c->block);
  if (first_stream) {
    rt_write2(tabs, &t, e->field, e->value, e->field2, e->value2, e->bad_class);
  } else {
    rt_write(tabs, &t, 0, 0, RT_OK);
  }
  b_varint(rec, (*ntab)++);
  b_varint(rec, c->block);
  for (start = 0; start < count; start += c->block) {
    uint64_t n = count - start < c->block ? count - start : c->block;
    bytes seg = {0};
    rt_encode_segment(&seg, &t, sym + start, n, start);
    if (first_stream && start == 0) {
      switch (e->seg) {
        case SEG_SHORT: seg.n--; break;
        case SEG_LONG: b_u8(&seg, 0); break;
        case SEG_3_BYTES: seg.n = 3; break;
        case SEG_STATE_LOW: b_set32(&seg, 0, (1u << 23) - 1); break;
        case SEG_STATE_HIGH: seg.d[3] |= 0x80; break;
        case SEG_FLIP: seg.d[seg.n / 2 + 2] ^= 0x10; break;
        default: break;
      }
    }
    b_varint(rec, seg.n);
    b_put(pay, seg.d, seg.n);
    free(seg.d);
  }
  rt_free(&t);
}

/* A smooth signed signal over [N / cols, cols], zeroed where sparse. */
static long k3_signal(const k3config *c, uint64_t e) {
  double i = (double)(e / c->cols), j = (double)(e % c->cols);
  double v = c->spread * (0.55 * sin(i / 9.0) + 0.35 * cos(j / 4.0)) + (double)(rnd() % 5) - 2.0;
  long q = lround(v);
  if (c->sparse && (double)(rnd() % 1000000) / 1e6 >= c->density) return 0;
  return q;
}

/* Builds a packed file of one record coded with kind 3 streams (every
 * stream of the record), `e` applied. *expected gets the D decoded bytes. */
static bytes k3_build(const k3config *c, const k4groups *g, const k3edit *e, uint8_t **expected,
                      uint64_t *D_out) {
  const unsigned eb = c->eb, P = eb >= 8 ? eb / 8 : 1;
  const uint64_t N = c->N, out_size = N * eb / 8, C = N / c->R;
  uint64_t off = 0, size = out_size, D, t, ntab = 0, nnz = 0, K = 0, ngap = 0, cur = UINT64_MAX;
  uint64_t *val = (uint64_t *)malloc(sizeof(uint64_t) * N), *keys = NULL;
  uint16_t *sym = (uint16_t *)malloc(sizeof(uint16_t) * (2 * N + 1));
  uint8_t *elems = (uint8_t *)calloc(out_size + 1, 1);
  bytes fb = {0}, tabs = {0}, rec = {0}, pay = {0}, meta = {0}, out;
  const uint64_t mask = eb == 64 ? ~0ull : (1ull << eb) - 1;
  unsigned p;

  /* elements: two's complement values of eb bits, little-endian / packed */
  for (t = 0; t < N; t++) {
    long v = k3_signal(c, t);
    uint64_t u;
    /* kind 4: groups that differ (a row group's offset, a column group's
     * gain), so that a decoder that picks the wrong table decodes other
     * symbols */
    if (g && v) v = v * (long)(1 + g->col_group[t % g->D] % 3) + 7 * (long)g->row_group[(t / g->D) % g->P];
    if (eb == 2) v = v / 40;
    if (eb == 4) v = v / 16;
    if (eb == 16) v = v * 97;
    if (eb == 32) {
      float fv = (float)v * 0.0125f;
      uint32_t bits;
      memcpy(&bits, &fv, 4);
      u = bits;
    } else {
      u = (uint64_t)v & mask;
    }
    val[t] = u;
    if (eb >= 8) {
      for (p = 0; p < eb / 8; p++) elems[t * (eb / 8) + p] = (uint8_t)(u >> (8 * p));
    } else {
      elems[t * eb / 8] |= (uint8_t)(u << (eb * (t % (8 / eb))));
    }
  }
  /* the inner flatbuffer: its size does not depend on the offset */
  write_flatbuffer(&fb, 1, &off, &size, 0, 0, 0);
  off = (fb.n + 15) / 16 * 16;
  fb.n = 0;
  write_flatbuffer(&fb, 1, &off, &size, 0, 0, 0);
  D = off + out_size;

  b_varint(&rec, 2); /* buffer_index */
  b_varint(&rec, eb);
  b_varint(&rec, 0); /* identity */
  b_varint(&rec, c->sparse ? 0 : 1);
  b_varint(&rec, c->sparse ? 1 : 0);
  b_varint(&rec, c->R);
  if (!c->sparse) {
    for (p = 0; p < P; p++) {
      for (t = 0; t < N; t++) {
        uint64_t u = val[(t % c->R) * C + t / c->R];
        sym[t] = (uint16_t)(eb < 8 ? u : (u >> (8 * (P - 1 - p))) & 0xff);
      }
      k3_stream(c, g, e, p == 0, sym, N, 1ull << (eb < 8 ? eb : 8), &tabs, &ntab, &rec, &pay);
    }
  } else {
    /* gaps over stream order, then the sorted distinct keys */
    uint64_t *vals = (uint64_t *)malloc(sizeof(uint64_t) * (N + 1));
    for (t = 0; t < N; t++) {
      uint64_t u = val[(t % c->R) * C + t / c->R], d;
      if (!u) continue;
      d = t - cur;
      while (d - 1 >= c->G - 1) {
        sym[ngap++] = (uint16_t)(c->G - 1);
        d -= c->G - 1;
      }
      sym[ngap++] = (uint16_t)(d - 1);
      cur = t;
      vals[nnz++] = u;
    }
    b_varint(&rec, nnz);
    b_varint(&rec, c->G);
    b_varint(&rec, ngap);
    if (ngap) k3_stream(c, k4_values_only ? NULL : g, e, 1, sym, ngap, c->G, &tabs, &ntab, &rec, &pay);
    b_varint(&rec, 0); /* expand */
    keys = (uint64_t *)malloc(sizeof(uint64_t) * (nnz + 1));
    for (t = 0; t < nnz; t++) {
      uint64_t j = K;
      while (j > 0 && keys[j - 1] > vals[t]) j--;
      if (j > 0 && keys[j - 1] == vals[t]) continue;
      memmove(keys + j + 1, keys + j, sizeof(uint64_t) * (K - j));
      keys[j] = vals[t];
      K++;
    }
    b_varint(&rec, K);
    if (K) {
      unsigned width = 0;
      uint64_t bit = 0;
      bytes d = {0};
      for (t = 1; t < K; t++)
        while (width < 64 && (keys[t] - keys[t - 1] - 1) >> width) width++;
      b_varint(&rec, keys[0]);
      b_varint(&rec, width);
      for (t = 1; t < K; t++) {
        uint64_t delta = keys[t] - keys[t - 1] - 1;
        unsigned b;
        for (b = width; b-- > 0; bit++) {
          if (bit % 8 == 0) b_u8(&d, 0);
          d.d[bit / 8] |= (uint8_t)(((delta >> b) & 1) << (7 - bit % 8));
        }
      }
      b_put(&rec, d.d, d.n);
      free(d.d);
    }
    for (t = 0; t < nnz; t++) {
      uint64_t lo = 0, hi = K;
      while (hi - lo > 1) {
        uint64_t mid = (lo + hi) / 2;
        if (keys[mid] <= vals[t]) lo = mid; else hi = mid;
      }
      sym[t] = (uint16_t)lo;
    }
    if (nnz) k3_stream(c, g, e, ngap == 0, sym, nnz, K, &tabs, &ntab, &rec, &pay);
    free(vals);
  }
  b_put(&meta, fb.d, fb.n);
  b_varint(&meta, ntab);
  b_put(&meta, tabs.d, tabs.n);
  b_varint(&meta, 1);
  b_put(&meta, rec.d, rec.n);
  {
    bytes stub = {(uint8_t *)(uintptr_t)k3_stub, sizeof k3_stub, sizeof k3_stub};
    out = v2_join(&stub, e->flags, meta.d, meta.n, fb.n, D, pay.d, pay.n);
  }
  *expected = (uint8_t *)calloc(D, 1);
  memcpy(*expected, fb.d, fb.n);
  memcpy(*expected + off, elems, out_size);
  *D_out = D;
  free(val); free(keys); free(sym); free(elems);
  free(fb.d); free(tabs.d); free(rec.d); free(pay.d); free(meta.d);
  return out;
}

static const k3config k3_configs[] = {
    /* name               eb sp  N      cols R  prec C  sh lag1 lag2 G  block dens spread */
    {"k3_int8_rows",       8, 0, 12000, 100, 1, 12, 16, 1, 1, 100, 0, 4096, 1, 60},
    {"k3_int8_block1",     8, 0, 300,   20,  1, 10, 8,  2, 1, 20,  0, 1,    1, 40},
    {"k3_int8_block777",   8, 0, 9000,  90,  1, 11, 5,  3, 1, 90,  0, 777,  1, 100},
    {"k3_int8_lag_5000",   8, 0, 20000, 5000, 1, 12, 32, 4, 1, 5000, 0, 20000, 1, 30},
    {"k3_int8_colmajor",   8, 0, 6000,  60,  60, 12, 9, 0, 60, 1,  0, 4096, 1, 20},
    {"k3_int8_one_class",  8, 0, 5000,  50,  1, 9,  1,  0, 1, 1,   0, 2048, 1, 60},
    {"k3_int8_shift16",    8, 0, 4000,  40,  1, 13, 4,  16, 2, 40, 0, 4096, 1, 60},
    {"k3_int8_short_bsearch", 8, 0, 700, 35, 1, 15, 32, 2, 1, 35,  0, 4096, 1, 60},
    {"k3_int8_lag_65535",  8, 0, 70000, 700, 1, 12, 3, 5, 65535, 1, 0, 70000, 1, 60},
    {"k3_int4",            4, 0, 10000, 50,  1, 8,  7,  0, 1, 50,  0, 4096, 1, 120},
    {"k3_int4_block3",     4, 0, 1002,  33,  1, 6,  3,  1, 1, 33,  0, 3,    1, 120},
    {"k3_int2",            2, 0, 4096,  64,  1, 4,  3,  0, 1, 64,  0, 1000, 1, 120},
    {"k3_int16_planes",   16, 0, 6000,  60,  1, 12, 8,  2, 1, 60,  0, 4096, 1, 60},
    {"k3_f32_planes",     32, 0, 5000,  50,  1, 12, 6,  2, 1, 50,  0, 1500, 1, 60},
    {"k3_sparse_int8",     8, 1, 20000, 100, 1, 12, 8,  2, 1, 100, 16, 4096, 0.3, 60},
    {"k3_sparse_colmajor", 8, 1, 8000,  80,  80, 11, 5, 1, 1, 80,  32, 1000, 0.2, 60},
    {"k3_sparse_G2_prec1", 8, 1, 3000,  30,  1, 1,  3,  0, 1, 30,  2, 4096, 0.05, 1},
    {"k3_sparse_f32",     32, 1, 9000,  90,  1, 12, 8,  2, 1, 90,  64, 4096, 0.4, 60},
    /* > 256 codebook entries: 9-bit symbols, u16 lookup */
    {"k3_sparse_int16_wide", 16, 1, 30000, 100, 1, 12, 4, 3, 2, 100, 16, 8192, 0.8, 200},
    /* blocks > 65536 symbols: streamed through the ring, across read chunks */
    {"k3_ring_int8_lag5000", 8, 0, 30000, 5000, 1, 12, 8, 3, 1, 5000, 0, 100000, 1, 30},
    {"k3_ring_int4_two_segs", 4, 0, 140000, 100, 1, 10, 6, 1, 1, 100, 0, 70000, 1, 120},
    {"k3_ring_bsearch",    8, 0, 1000,  20,  1, 15, 32, 2, 1, 20,  0, 100000, 1, 60},
    {"k3_ring_int16_wide", 16, 1, 80000, 100, 1, 12, 4, 3, 2, 100, 16, 70000, 0.9, 200},
};

static void test_k3_configs(void) {
  size_t i;
  for (i = 0; i < sizeof k3_configs / sizeof k3_configs[0]; i++) {
    const k3config *c = &k3_configs[i];
    uint8_t *expected, *out;
    uint64_t D, n = 0;
    bytes f = k3_build(c, NULL, &k3_none, &expected, &D);
    int rc = tfdc_decoded_size(f.d, f.n, &n);
    CHECK(rc == TFDC_OK && n == D, "%s: decoded_size -> %s", c->name, tfdc_strerror(rc));
    out = (uint8_t *)malloc(D + 1);
    out[D] = 0x5A;
    rc = tfdc_decode(f.d, f.n, out, D);
    CHECK(rc == TFDC_OK, "%s: decode -> %s", c->name, tfdc_strerror(rc));
    CHECK(rc != TFDC_OK || memcmp(out, expected, D) == 0, "%s: decoded bytes differ", c->name);
    CHECK(out[D] == 0x5A, "%s: wrote past D", c->name);
    maybe_write(c->name, &f);
    free(out);
    free(expected);
    free(f.d);
  }
}

static int k3_status(const k3config *c, const k3edit *e) {
  uint8_t *expected, *out;
  uint64_t D;
  bytes f = k3_build(c, NULL, e, &expected, &D);
  int rc;
  out = (uint8_t *)malloc(D);
  rc = tfdc_decode(f.d, f.n, out, D);
  if (rc == TFDC_OK && memcmp(out, expected, D) != 0) rc = 1; /* decoded, but wrongly */
  free(out);
  free(expected);
  free(f.d);
  return rc;
}

/* Every MUST of §5.3 (and the kind 3 rules of §4, §5.2) broken once. */
static void test_k3_rules(void) {
  const k3config *c = &k3_configs[0];  /* int8 planes: alphabet 256 = 2^8 */
  const k3config *cb = &k3_configs[14]; /* sparse: gap table of width 4 = G */
  static const struct {
    int field;
    uint64_t value;
  } bad_fields[] = {{1, 0}, {1, 16}, {2, 0}, {2, 16}, {3, 0}, {3, 65536}, {4, 0}, {4, 65536},
                    {5, 17}, {6, 0}, {6, 33}};
  k3edit e;
  size_t i;
  int rc;
  CHECK(k3_status(c, &k3_none) == TFDC_OK, "unbroken");
  e = k3_none;
  e.flags = 0;
  CHECK(k3_status(c, &e) == TFDC_ERR_CORRUPT, "kind 3 in a file without flags bit 0");
  e.flags = 3; /* bit 1 allows kind 4 tables; a file need not have one */
  CHECK(k3_status(c, &e) == TFDC_OK, "flags 3");
  e.flags = 8;
  CHECK(k3_status(c, &e) == TFDC_ERR_CORRUPT, "unknown flag bit 3");
  e.flags = 9;
  CHECK(k3_status(c, &e) == TFDC_ERR_CORRUPT, "unknown flag bit 3 with bit 0");
  e.flags = 1ull << 40;
  CHECK(k3_status(c, &e) == TFDC_ERR_CORRUPT, "unknown flag bit 40");
  for (i = 0; i < sizeof bad_fields / sizeof bad_fields[0]; i++) {
    e = k3_none;
    e.field = bad_fields[i].field;
    e.value = bad_fields[i].value;
    rc = k3_status(c, &e);
    CHECK(rc == TFDC_ERR_CORRUPT, "table field %d = %llu -> %d", e.field,
          (unsigned long long)e.value, rc);
  }
  /* the largest legal values of each field are accepted by the parser: a
   * different lag or shift decodes other symbols, which the state check or
   * the byte comparison catches, never a crash */
  e = k3_none;
  e.field = 3;
  e.value = 65535;
  rc = k3_status(c, &e);
  CHECK(rc != TFDC_OK, "lag1 65535 for a lag1 1 stream -> %d", rc);
  e = k3_none;
  for (e.bad_class = RT_SUM_PLUS_ONE; e.bad_class <= RT_M_ZERO; e.bad_class++) {
    if (e.bad_class == RT_TOP_SYMBOL) continue;
    rc = k3_status(c, &e);
    CHECK(rc == TFDC_ERR_CORRUPT, "bad class %d -> %d", e.bad_class, rc);
  }
  /* a table whose alphabet size exceeds the stream's: G = 16 gaps, width 4
   * ok; the codebook values (K < 2^w) with symbol 2^w - 1 coded are not */
  e = k3_none;
  e.bad_class = RT_TOP_SYMBOL;
  {
    k3config c2 = *cb;
    c2.G = 12; /* width 4, alphabet 12 < 16 */
    rc = k3_status(&c2, &e);
    CHECK(rc == TFDC_ERR_CORRUPT, "table alphabet 16 > stream alphabet 12 -> %d", rc);
  }
  /* segments */
  {
    size_t q;
    for (q = 0; q < sizeof SEG_CASES / sizeof SEG_CASES[0]; q++) {
      e = k3_none;
      e.seg = SEG_CASES[q].seg;
      rc = k3_status(c, &e);
      CHECK(rc == SEG_CASES[q].status, "%s -> %d", SEG_CASES[q].what, rc);
    }
  }
  e = k3_none;
  e.seg = SEG_FLIP;
  rc = k3_status(c, &e);
  CHECK(rc == TFDC_ERR_CORRUPT || rc == TFDC_ERR_TRUNCATED, "payload bit flipped -> %d", rc);
  /* any version_minor is accepted (§4) */
  {
    uint8_t *expected;
    uint64_t D;
    bytes f = k3_build(c, NULL, &k3_none, &expected, &D), g;
    v2_parts parts;
    uint8_t *o = (uint8_t *)malloc(D);
    bytes stub0 = {0};
    CHECK(v2_split(&f, &parts), "split");
    b_put(&stub0, k3_stub, sizeof k3_stub);
    stub0.d[126] = 0; /* version_minor 0 with flags 1 */
    g = v2_join(&stub0, 1, parts.meta, parts.M, parts.F, parts.D, parts.payload, parts.payload_len);
    CHECK(tfdc_decode(g.d, g.n, o, D) == TFDC_OK && memcmp(o, expected, D) == 0, "version_minor 0");
    free(g.d); free(stub0.d); free(parts.meta); free(o); free(expected); free(f.d);
  }
}

/* Truncations, bit flips and re-signed meta mutations of small kind 3
 * files: never a crash, an overrun or an accepted broken file. */
static void test_k3_mutations(void) {
  static const k3config small[] = {
      {"k3m_int8", 8, 0, 600, 20, 1, 8, 4, 2, 1, 20, 0, 128, 1, 30},
      {"k3m_sparse", 8, 1, 900, 30, 1, 6, 3, 1, 1, 30, 8, 256, 0.3, 20},
  };
  size_t i;
  for (i = 0; i < sizeof small / sizeof small[0]; i++) {
    uint8_t *expected;
    uint64_t D;
    bytes f = k3_build(&small[i], NULL, &k3_none, &expected, &D);
    test_v2_file(small[i].name, &f);
    free(expected);
    free(f.d);
  }
}

/* ---- format 2.2: kind 4 (grouped rANS) streams in files built here ------ */

typedef struct {
  k3config c;
  k4groups g;
} k4config;

static const k4config k4_configs[] = {
    /* name                   eb sp  N      cols R  prec C  sh lag1 lag2 G  block dens spread;
     *                        D      P      Gc Gr scramble */
    /* D = 1: every symbol is a row; the rows' groups cycle with period 7 */
    {{"k4_int8_D1",            8, 0, 5000,  50,  1, 10, 4,  2, 1, 50,  0, 4096, 1, 60}, {1, 7, 1, 3, 0, NULL, NULL}},
    /* P = 3 < 120 rows: the row groups wrap; scrambled maps */
    {{"k4_int8_rows_wrap",     8, 0, 12000, 100, 1, 12, 8,  1, 1, 100, 0, 4096, 1, 60}, {100, 3, 2, 3, 1, NULL, NULL}},
    /* 9001 symbols: D does not divide the count; block 777 = 10 rows + 7,
     * so segments start mid-row */
    {{"k4_int8_D_not_dividing", 8, 0, 9001, 77,  1, 11, 5,  3, 1, 77,  0, 777,  1, 100}, {77, 40, 3, 4, 1, NULL, NULL}},
    /* T = 2 x 4 x 32 = 256, long enough for the slot lookup (>= T 2^12 / 16) */
    {{"k4_int8_T256_lut",      8, 0, 70000, 64,  1, 12, 32, 2, 1, 64,  0, 8192, 1, 60}, {64, 1094, 4, 2, 1, NULL, NULL}},
    /* T = 256, too short for the lookup: binary search */
    {{"k4_int8_T256_bsearch",  8, 0, 6000,  64,  1, 12, 32, 2, 1, 64,  0, 4096, 1, 60}, {64, 94, 4, 2, 1, NULL, NULL}},
    /* lags of one and two rows (D = 200), segments of 4999 (mid-row starts) */
    {{"k4_int8_lag_rows",      8, 0, 20000, 200, 1, 12, 8,  2, 200, 401, 0, 4999, 1, 60}, {200, 100, 2, 2, 1, NULL, NULL}},
    {{"k4_int8_block1",        8, 0, 300,   20,  1, 10, 4,  1, 1, 20,  0, 1,    1, 40}, {20, 15, 2, 2, 0, NULL, NULL}},
    {{"k4_int8_block3_D7",     8, 0, 1000,  7,   1, 9,  3,  2, 1, 7,   0, 3,    1, 40}, {7, 5, 7, 2, 0, NULL, NULL}},
    {{"k4_int4",               4, 0, 10000, 50,  1, 8,  7,  0, 1, 50,  0, 4096, 1, 120}, {50, 200, 2, 3, 1, NULL, NULL}},
    {{"k4_int2",               2, 0, 4096,  64,  1, 4,  3,  0, 1, 64,  0, 1000, 1, 120}, {64, 64, 4, 2, 0, NULL, NULL}},
    {{"k4_int16_planes",      16, 0, 6000,  60,  1, 12, 8,  2, 1, 60,  0, 4096, 1, 60}, {60, 100, 3, 2, 1, NULL, NULL}},
    {{"k4_f32_planes",        32, 0, 5000,  50,  1, 12, 6,  2, 1, 50,  0, 1500, 1, 60}, {50, 100, 2, 2, 1, NULL, NULL}},
    {{"k4_int8_colmajor",      8, 0, 6000,  60,  60, 12, 9, 0, 60, 1,  0, 4096, 1, 20}, {100, 60, 3, 1, 1, NULL, NULL}},
    {{"k4_sparse_int8",        8, 1, 20000, 100, 1, 12, 8,  2, 1, 100, 16, 4096, 0.3, 60}, {100, 50, 2, 2, 1, NULL, NULL}},
    /* > 256 codebook entries: 9-bit symbols, u16 lookup */
    {{"k4_sparse_int16_wide", 16, 1, 30000, 100, 1, 12, 4,  3, 2, 100, 16, 8192, 0.8, 200}, {100, 300, 4, 2, 1, NULL, NULL}},
    /* blocks > 65536 symbols: streamed through the ring; the second segment
     * starts at symbol 70000, column 70000 mod 97 = 63 */
    {{"k4_ring_int8",          8, 0, 140000, 97, 1, 10, 6,  1, 1, 97,  0, 70000, 1, 60}, {97, 1400, 2, 3, 1, NULL, NULL}},
    {{"k4_ring_bsearch",       8, 0, 1000,  20,  1, 15, 32, 2, 1, 20,  0, 100000, 1, 60}, {20, 50, 2, 4, 1, NULL, NULL}},
    /* D and P at their maximum 65536: a row longer than the count ... */
    {{"k4_max_D_P_short",      4, 0, 3000,  100, 1, 8,  2,  0, 1, 100, 0, 1000, 1, 120}, {65536, 65536, 2, 2, 1, NULL, NULL}},
    /* ... and rows 0 .. 2 of 65536 over two segments */
    {{"k4_max_D_P",            4, 0, 140000, 100, 1, 8, 2,  0, 1, 100, 0, 65536, 1, 120}, {65536, 65536, 2, 2, 1, NULL, NULL}},
    /* one group with maps of 5 and 3 entries (all 0): every base is 0 */
    {{"k4_one_group_maps",     8, 0, 5000,  50,  1, 10, 8,  2, 1, 50,  0, 777,  1, 60}, {5, 3, 1, 1, 0, NULL, NULL}},
};

/* Builds, decodes and compares one file; 1 if it decoded right. */
static int built_decodes(const char *name, const k3config *c, const k4groups *g, const k3edit *e,
                         int *status) {
  uint8_t *expected, *out;
  uint64_t D, n = 0;
  bytes f = k3_build(c, g, e, &expected, &D);
  int size_rc = tfdc_decoded_size(f.d, f.n, &n), rc, ok;
  out = (uint8_t *)malloc(D + 1);
  out[D] = 0x5A;
  rc = tfdc_decode(f.d, f.n, out, D);
  ok = rc == TFDC_OK && memcmp(out, expected, D) == 0;
  CHECK(rc != TFDC_OK || (size_rc == TFDC_OK && n == D), "%s: decoded_size -> %s", name,
        tfdc_strerror(size_rc));
  CHECK(out[D] == 0x5A, "%s: wrote past D", name);
  if (status) *status = rc == TFDC_OK && !ok ? 1 : rc; /* 1: decoded, but wrongly */
  if (ok) maybe_write(name, &f);
  free(out);
  free(expected);
  free(f.d);
  return ok;
}

static void test_k4_configs(void) {
  size_t i;
  for (i = 0; i < sizeof k4_configs / sizeof k4_configs[0]; i++) {
    k4config k = k4_configs[i];
    int rc;
    k4_maps(&k.g);
    CHECK(built_decodes(k.c.name, &k.c, &k.g, &k4_none, &rc), "%s: decode -> %d", k.c.name, rc);
    free(k.g.col_group);
    free(k.g.row_group);
  }
}

/* Kind 3 gaps and kind 4 values in one file: flags 3 decodes it; without
 * bit 0 (kind 3) or bit 1 (kind 4) it is refused. */
static void test_k4_with_k3(void) {
  k4config k = k4_configs[13]; /* sparse int8 */
  k3edit e = k4_none;
  int rc;
  k4_maps(&k.g);
  k4_values_only = 1;
  CHECK(built_decodes("k4_sparse_k3_gaps", &k.c, &k.g, &e, &rc), "kind 3 gaps, kind 4 values -> %d", rc);
  e.flags = 2;
  built_decodes("k4_sparse_k3_gaps", &k.c, &k.g, &e, &rc);
  CHECK(rc == TFDC_ERR_CORRUPT, "the same with flags 2 -> %d", rc);
  e.flags = 1;
  built_decodes("k4_sparse_k3_gaps", &k.c, &k.g, &e, &rc);
  CHECK(rc == TFDC_ERR_CORRUPT, "the same with flags 1 -> %d", rc);
  k4_values_only = 0;
  free(k.g.col_group);
  free(k.g.row_group);
}

/* §5.4: a kind 4 table with D = P = Gr = Gc = 1 codes exactly as the kind 3
 * table with the same fields: the same payload, the same decoded bytes. */
static void test_k4_one_group_is_kind3(void) {
  static const size_t which[] = {0, 9, 13, 19}; /* int8 rows, int4, sparse, ring */
  size_t i;
  for (i = 0; i < sizeof which / sizeof which[0]; i++) {
    const k3config *c = &k3_configs[which[i]];
    k4groups g = {1, 1, 1, 1, 0, NULL, NULL};
    uint64_t seed = rng_state, D3, D4;
    uint8_t *e3, *e4, *o;
    bytes f3, f4;
    v2_parts p3, p4;
    k4_maps(&g);
    f3 = k3_build(c, NULL, &k3_none, &e3, &D3);
    rng_state = seed; /* the same signal */
    f4 = k3_build(c, &g, &k4_none, &e4, &D4);
    CHECK(D3 == D4 && memcmp(e3, e4, D3) == 0, "%s: the same tensor", c->name);
    CHECK(v2_split(&f3, &p3) && v2_split(&f4, &p4), "%s: split", c->name);
    CHECK(p3.payload_len == p4.payload_len && memcmp(p3.payload, p4.payload, p3.payload_len) == 0,
          "%s: kind 4 with one group has kind 3's payload", c->name);
    o = (uint8_t *)malloc(D4);
    CHECK(tfdc_decode(f4.d, f4.n, o, D4) == TFDC_OK && memcmp(o, e4, D4) == 0, "%s: kind 4 (1x1)", c->name);
    CHECK(tfdc_decode(f3.d, f3.n, o, D3) == TFDC_OK && memcmp(o, e3, D3) == 0, "%s: kind 3", c->name);
    free(o); free(e3); free(e4); free(f3.d); free(f4.d); free(p3.meta); free(p4.meta);
    free(g.col_group); free(g.row_group);
  }
}

static int k4_status(const k4config *k, const k3edit *e) {
  k4config kk = *k;
  int rc = 0;
  k4_maps(&kk.g);
  built_decodes(kk.c.name, &kk.c, &kk.g, e, &rc);
  free(kk.g.col_group);
  free(kk.g.row_group);
  return rc;
}

/* Every MUST of §5.4 (and the kind 3 rules it inherits, §4's flags) broken
 * once: CORRUPT (or, where bytes run out, TRUNCATED). */
static void test_k4_rules(void) {
  const k4config *k = &k4_configs[1];  /* int8, D 100, Gc 2, P 3, Gr 3, C 8: T = 48 */
  const k4config *kb = &k4_configs[13]; /* sparse: the gap table has width 4 */
  static const struct {
    int field;
    uint64_t value, value2; /* value2: of field 7 + 1 (Gc) when nonzero */
    const char *what;
  } bad_fields[] = {
      {1, 0, 0, "prec 0"}, {1, 16, 0, "prec 16"}, {2, 0, 0, "width 0"}, {2, 16, 0, "width 16"},
      {3, 0, 0, "lag1 0"}, {3, 65536, 0, "lag1 65536"}, {4, 0, 0, "lag2 0"}, {4, 65536, 0, "lag2 65536"},
      {5, 17, 0, "shift 17"}, {6, 0, 0, "classes 0"}, {6, 33, 0, "classes 33"},
      {RT_F_ROW_LEN, 0, 0, "row_len 0"}, {RT_F_ROW_LEN, 65537, 0, "row_len 65537"},
      {RT_F_COL_GROUPS, 0, 0, "col_groups 0"}, {RT_F_ROW_PERIOD, 0, 0, "row_period 0"},
      {RT_F_ROW_PERIOD, 65537, 0, "row_period 65537"}, {RT_F_ROW_GROUPS, 0, 0, "row_groups 0"},
      {RT_F_ROW_GROUPS, 17, 0, "T = 17 x 2 x 8 = 272 > 256"},
      {RT_F_COL_GROUPS, 257, 0, "col_groups 257"},
      {RT_F_ROW_GROUPS, 1ull << 32, 1ull << 32, "Gr = Gc = 2^32 (a product that wraps)"},
      {RT_F_ROW_GROUPS, ~0ull, 0, "row_groups 2^64 - 1"},
  };
  static const struct { int bad; const char *what; } bad_tables[] = {
      {RT_SUM_PLUS_ONE, "sum 2^prec + 1"}, {RT_SUM_MINUS_ONE, "sum 2^prec - 1"},
      {RT_PAST_WIDTH, "first + m = 2^w + 1"}, {RT_FREQ_TOO_BIG, "a frequency 2^prec + 1"},
      {RT_M_ZERO, "m = 0"}, {RT_COL_GROUP_GC, "col_group entry = Gc"},
      {RT_ROW_GROUP_GR, "row_group entry = Gr"},
  };
  k3edit e;
  size_t i;
  int rc, last;
  CHECK(k4_status(k, &k4_none) == TFDC_OK, "unbroken");
  e = k4_none;
  e.flags = 2; /* kind 4 tables only: bit 0 is not needed */
  CHECK(k4_status(k, &e) == TFDC_OK, "flags 2");
  e.flags = 1;
  CHECK(k4_status(k, &e) == TFDC_ERR_CORRUPT, "kind 4 in a file with flags 1");
  e.flags = 0;
  CHECK(k4_status(k, &e) == TFDC_ERR_CORRUPT, "kind 4 in a file with flags 0");
  e.flags = 11;
  CHECK(k4_status(k, &e) == TFDC_ERR_CORRUPT, "flags 11 (bit 3)");
  e.flags = 2;
  CHECK(k3_status(&k3_configs[0], &e) == TFDC_ERR_CORRUPT, "kind 3 in a file with flags 2");
  for (i = 0; i < sizeof bad_fields / sizeof bad_fields[0]; i++) {
    e = k4_none;
    e.field = bad_fields[i].field;
    e.value = bad_fields[i].value;
    if (bad_fields[i].value2) {
      e.field2 = RT_F_COL_GROUPS;
      e.value2 = bad_fields[i].value2;
    }
    rc = k4_status(k, &e);
    CHECK(rc == TFDC_ERR_CORRUPT, "%s -> %d", bad_fields[i].what, rc);
  }
  for (last = 0; last <= 1; last++) {
    for (i = 0; i < sizeof bad_tables / sizeof bad_tables[0]; i++) {
      e = k4_none;
      e.bad_class = bad_tables[i].bad | (last ? RT_LAST_TABLE : 0);
      rc = k4_status(k, &e);
      CHECK(rc == TFDC_ERR_CORRUPT, "%s (%s class table) -> %d", bad_tables[i].what, last ? "last" : "first", rc);
    }
  }
  /* T > 256 with every class table present (a decoder without the rule
   * would index past its tables) */
  {
    k4config k2 = *k;
    k2.g.Gr = 17; /* 17 x 2 x 8 = 272 */
    rc = k4_status(&k2, &k4_none);
    CHECK(rc == TFDC_ERR_CORRUPT, "T = 272, all class tables written -> %d", rc);
    k2.g.Gr = 16; /* 256: the largest legal T */
    CHECK(k4_status(&k2, &k4_none) == TFDC_OK, "T = 256 = 16 x 2 x 8");
    k2.c.classes = 1;
    k2.g.Gc = 1;
    k2.g.Gr = 257; /* P = 3 row groups used, 257 listed */
    rc = k4_status(&k2, &k4_none);
    CHECK(rc == TFDC_ERR_CORRUPT, "T = 257 x 1 x 1 -> %d", rc);
  }
  /* one class table fewer: the stream descriptor is read as its last */
  e = k4_none;
  e.bad_class = RT_FEWER_TABLES;
  rc = k4_status(k, &e);
  CHECK(rc == TFDC_ERR_CORRUPT || rc == TFDC_ERR_TRUNCATED, "T - 1 class tables -> %d", rc);
  /* the last class table codes symbol 2^w - 1: alphabet 16 > the gap
   * stream's 12 */
  {
    k4config k2 = *kb;
    k2.c.G = 12;
    e = k4_none;
    e.bad_class = RT_TOP_SYMBOL | RT_LAST_TABLE;
    rc = k4_status(&k2, &e);
    CHECK(rc == TFDC_ERR_CORRUPT, "table alphabet 16 > stream alphabet 12 -> %d", rc);
    e.bad_class = RT_OK;
    CHECK(k4_status(&k2, &e) == TFDC_OK, "alphabet 12 unbroken");
  }
  /* segments */
  {
    size_t q;
    for (q = 0; q < sizeof SEG_CASES / sizeof SEG_CASES[0]; q++) {
      e = k4_none;
      e.seg = SEG_CASES[q].seg;
      rc = k4_status(k, &e);
      CHECK(rc == SEG_CASES[q].status, "%s -> %d", SEG_CASES[q].what, rc);
    }
  }
  /* a decoder that ignored the groups would decode other symbols: the
   * same stream read with one group fails (wrong symbols or state) */
  e = k4_none;
  e.field = RT_F_ROW_GROUPS;
  e.value = 1; /* T = 16: class tables 16 .. 47 are read as the descriptor */
  rc = k4_status(k, &e);
  CHECK(rc != TFDC_OK, "row_groups 1 for a 3-group stream -> %d", rc);
}

/* A v2 file of one dense int8 record of `count` codebook indices (the
 * codebook is 0, 1: each symbol is its own byte), coded with one kind 3 or
 * 4 table given as bytes and one segment. */
static bytes example_file(const uint8_t *table, size_t table_len, const uint8_t *seg, size_t seg_len,
                          uint64_t count, uint64_t flags, uint64_t *D_out, uint64_t *off_out) {
  uint64_t off = 0, size = count, D;
  bytes fb = {0}, meta = {0}, out;
  bytes stub = {(uint8_t *)(uintptr_t)k3_stub, sizeof k3_stub, sizeof k3_stub};
  write_flatbuffer(&fb, 1, &off, &size, 0, 0, 0);
  off = (fb.n + 15) / 16 * 16;
  fb.n = 0;
  write_flatbuffer(&fb, 1, &off, &size, 0, 0, 0);
  D = off + count;
  b_put(&meta, fb.d, fb.n);
  b_varint(&meta, 1);
  b_put(&meta, table, table_len);
  b_varint(&meta, 1);
  /* buffer 2, 8-bit elements, identity, codebook values, dense, R = 1 */
  b_varint(&meta, 2); b_varint(&meta, 8); b_varint(&meta, 0); b_varint(&meta, 0);
  b_varint(&meta, 0); b_varint(&meta, 1);
  /* no expansion; K = 2: keys 0 and 0 + 0 + 1 (width 0, no delta bits) */
  b_varint(&meta, 0); b_varint(&meta, 2); b_varint(&meta, 0); b_varint(&meta, 0);
  /* the stream: table 0, one segment */
  b_varint(&meta, 0); b_varint(&meta, count); b_varint(&meta, seg_len);
  out = v2_join(&stub, flags, meta.d, meta.n, fb.n, D, seg, seg_len);
  *D_out = D;
  *off_out = off;
  free(fb.d);
  free(meta.d);
  return out;
}

/* The examples of FORMAT.md §5.3 (kind 3) and §5.4 (kind 4): their bytes
 * are what this file's independent encoder writes, and they decode to the
 * symbols 0 1 0 0 1 0 0 0. */
static void test_format_examples(void) {
  static const uint16_t sym[8] = {0, 1, 0, 0, 1, 0, 0, 0};
  static const uint8_t k3_table[] = {0x03, 0x02, 0x01, 0x01, 0x02, 0x00, 0x02,
                                     0x00, 0x02, 0x02, 0x02, 0x00, 0x02, 0x03, 0x01};
  static const uint8_t k3_seg[] = {0x39, 0x8e, 0xe3, 0x00, 0x89};
  static const uint8_t k4_table[] = {0x04, 0x02, 0x01, 0x01, 0x02, 0x00, 0x01, 0x04, 0x02, 0x00, 0x00, 0x01,
                                     0x01, 0x01, 0x01, 0x00, 0x00, 0x02, 0x02, 0x02, 0x00, 0x01, 0x04};
  static const uint8_t k4_seg[] = {0x0c, 0x00, 0x00, 0x08};
  static const uint32_t k3_freq[4] = {2, 2, 3, 1}, k4_freq[4] = {2, 2, 4, 0};
  static const uint32_t cols[4] = {0, 0, 1, 1}, rows[1] = {0};
  int kind;
  for (kind = 3; kind <= 4; kind++) {
    const uint8_t *table = kind == 3 ? k3_table : k4_table, *seg = kind == 3 ? k3_seg : k4_seg;
    size_t tn = kind == 3 ? sizeof k3_table : sizeof k4_table, sn = kind == 3 ? sizeof k3_seg : sizeof k4_seg;
    rtable t;
    bytes tb = {0}, sb = {0}, f;
    uint32_t freq[4], cum[4];
    uint64_t D, off, i;
    uint8_t *out;
    int rc;
    memset(&t, 0, sizeof t);
    t.prec = 2; t.width = 1; t.lag1 = 1; t.lag2 = 2; t.shift = 0;
    t.classes = kind == 3 ? 2 : 1;
    if (kind == 4) {
      t.D = 4; t.Gc = 2; t.P = 1; t.Gr = 1; t.col_group = cols; t.row_group = rows;
    }
    memcpy(freq, kind == 3 ? k3_freq : k4_freq, sizeof freq);
    for (i = 0; i < 4; i += 2) { cum[i] = 0; cum[i + 1] = freq[i]; }
    t.freq = freq;
    t.cum = cum;
    rt_write(&tb, &t, 0, 0, RT_OK);
    rt_encode_segment(&sb, &t, sym, 8, 0);
    CHECK(tb.n == tn && memcmp(tb.d, table, tn) == 0, "kind %d example: table bytes", kind);
    CHECK(sb.n == sn && memcmp(sb.d, seg, sn) == 0, "kind %d example: segment bytes", kind);
    f = example_file(table, tn, seg, sn, 8, kind == 3 ? 1 : 2, &D, &off);
    out = (uint8_t *)malloc(D);
    rc = tfdc_decode(f.d, f.n, out, D);
    CHECK(rc == TFDC_OK, "kind %d example: decode -> %s", kind, tfdc_strerror(rc));
    for (i = 0; rc == TFDC_OK && i < 8; i++)
      CHECK(out[off + i] == sym[i], "kind %d example: symbol %llu is %u", kind, (unsigned long long)i, out[off + i]);
    if (rc == TFDC_OK) maybe_write_v2(kind == 3 ? "k3_format_example" : "k4_format_example", &f);
    free(out); free(f.d); free(tb.d); free(sb.d);
  }
}

/* Truncations, bit flips and re-signed meta mutations of small kind 4
 * files: never a crash, an overrun or an accepted broken file. */
static void test_k4_mutations(void) {
  static const k4config small[] = {
      {{"k4m_int8", 8, 0, 600, 20, 1, 8, 2, 2, 1, 20, 0, 128, 1, 30}, {20, 3, 2, 2, 1, NULL, NULL}},
      {{"k4m_sparse", 8, 1, 900, 30, 1, 6, 1, 1, 1, 30, 8, 256, 0.3, 20}, {7, 4, 3, 2, 1, NULL, NULL}},
  };
  size_t i;
  for (i = 0; i < sizeof small / sizeof small[0]; i++) {
    k4config k = small[i];
    uint8_t *expected;
    uint64_t D;
    bytes f;
    k4_maps(&k.g);
    f = k3_build(&k.c, &k.g, &k4_none, &expected, &D);
    test_v2_file(k.c.name, &f);
    maybe_write_v2(k.c.name, &f);
    free(expected);
    free(f.d);
    free(k.g.col_group);
    free(k.g.row_group);
  }
}

/* ---- format 2.3: patches (§6.7) in files built here --------------------- */

/* A patch as the builder writes it: out_offset, the range's bytes and how
 * they are coded; with `size_as` set, out_size is written as size_as_value
 * (the fields still describe d's elements). */
typedef struct {
  uint64_t off;
  v2desc d;
  int size_as;
  uint64_t size_as_value;
} ppatch;

/* A file to build: an inner flatbuffer whose buffer 1 holds `data_len` data
 * bytes (zeros but for `dirty`, if >= 0: that byte is 1), one record (buffer
 * 2, dense int8) unless `no_record`, and the patches; then what to break. */
typedef struct {
  uint32_t data_len;
  int no_record;
  int dirty;
  uint64_t flags;       /* header flags: 4 for a patched file */
  int no_list;          /* leave out num_patches and the patches */
  int count_as;         /* num_patches written as count_value; 2: the bound + 1 */
  uint64_t count_value;
  int extra_meta, extra_payload; /* a zero byte after the descriptors / the payload */
} pspec;

static const pspec pspec_ok = {64, 0, -1, 4, 0, 0, 0, 0, 0};

/* The record of buffer 2 in patched files: 32 int8 elements, 3 distinct. */
static const uint8_t prec_bytes[32] = {5, 5, 7, 0, 5, 9, 9, 5, 0, 0, 7, 5, 5, 5, 9, 0,
                                       7, 7, 5, 5, 0, 9, 5, 5, 5, 7, 0, 0, 5, 5, 9, 7};
static const v2desc prec_desc = {prec_bytes, 32, 8, 0, 0, 0, 1, 0, 4096, 0};

/* The inner flatbuffer of a spec and where its parts are: offsets only
 * depend on the sizes, so tests place their patches with this first. */
static bytes patch_inner(const pspec *s, fb_layout *lay, uint64_t *rec_off) {
  uint8_t *data = (uint8_t *)calloc(s->data_len + 1, 1);
  uint64_t off = 0, size = prec_desc.size;
  uint32_t nrec = s->no_record ? 0 : 1;
  bytes fb = {0};
  if (s->dirty >= 0) data[s->dirty] = 1;
  write_flatbuffer_ex(&fb, nrec, &off, &size, 0, 0, 0, data, s->data_len, lay);
  off = (fb.n + 15) / 16 * 16;
  fb.n = 0;
  write_flatbuffer_ex(&fb, nrec, &off, &size, 0, 0, 0, data, s->data_len, lay);
  *rec_off = off;
  free(data);
  return fb;
}

static unsigned varint_len(uint64_t v) {
  unsigned n = 1;
  while (v >= 0x80) { v >>= 7; n++; }
  return n;
}

/* Builds the file; *expected gets its D decoded bytes (the inner
 * flatbuffer with the patches' bytes, then the record's). */
static bytes patch_build(const pspec *s, const ppatch *pp, size_t np, uint8_t **expected, uint64_t *D_out) {
  fb_layout lay;
  uint64_t rec_off, F, D, i;
  bytes fb = patch_inner(s, &lay, &rec_off), rdesc = {0}, pdesc = {0}, pay = {0}, meta = {0}, out;
  bytes stub = {0};
  v2tabs *ts = (v2tabs *)calloc(1, sizeof(v2tabs));
  F = fb.n;
  D = s->no_record ? F : rec_off + prec_desc.size;
  if (!s->no_record) {
    b_varint(&rdesc, 2); /* buffer_index */
    v2_write_fields(&rdesc, ts, &pay, &prec_desc);
  }
  for (i = 0; i < np; i++) {
    b_varint(&pdesc, pp[i].off);
    b_varint(&pdesc, pp[i].size_as ? pp[i].size_as_value : pp[i].d.size);
    v2_write_fields(&pdesc, ts, &pay, &pp[i].d);
  }
  b_put(&meta, fb.d, fb.n);
  b_varint(&meta, ts->n);
  b_put(&meta, ts->all.d, ts->all.n);
  b_varint(&meta, s->no_record ? 0 : 1);
  b_put(&meta, rdesc.d, rdesc.n);
  if (!s->no_list) {
    uint64_t count = np;
    if (s->count_as == 1) count = s->count_value;
    if (s->count_as == 2) { /* floor((M - F) / 7) + 1, M counting this varint */
      uint64_t rest = meta.n - F + pdesc.n + (s->extra_meta != 0);
      unsigned L;
      for (L = 1; L <= 10; L++) {
        count = (rest + L) / 7 + 1; /* every patch takes >= 7 bytes (§6.7) */
        if (varint_len(count) == L) break;
      }
    }
    b_varint(&meta, count);
    b_put(&meta, pdesc.d, pdesc.n);
  }
  if (s->extra_meta) b_u8(&meta, 0);
  if (s->extra_payload) b_u8(&pay, 0);
  b_put(&stub, k3_stub, sizeof k3_stub);
  stub.d[126] = 3; /* version_minor 3 */
  out = v2_join(&stub, s->flags, meta.d, meta.n, F, D, pay.d, pay.n);
  *expected = (uint8_t *)calloc(D + 1, 1);
  memcpy(*expected, fb.d, fb.n);
  for (i = 0; i < np; i++)
    if (pp[i].off <= F && pp[i].d.size <= F - pp[i].off) memcpy(*expected + pp[i].off, pp[i].d.bytes, pp[i].d.size);
  if (!s->no_record) memcpy(*expected + rec_off, prec_bytes, prec_desc.size);
  *D_out = D;
  free(fb.d); free(rdesc.d); free(pdesc.d); free(pay.d); free(meta.d); free(stub.d);
  free(ts->all.d); free(ts);
  return out;
}

/* Builds and decodes: the status, or 1 for a file decoded to other bytes
 * than expected. A decoded file must also have the right size and be
 * refused into a buffer one byte short. `seed`: write it to the corpus. */
static int patch_status(const char *name, const pspec *s, const ppatch *pp, size_t np, int seed) {
  uint8_t *expected, *out;
  uint64_t D, n = 0;
  bytes f = patch_build(s, pp, np, &expected, &D);
  int rc;
  out = (uint8_t *)malloc(D + 1);
  out[D] = 0x5A;
  rc = tfdc_decode(f.d, f.n, out, D);
  CHECK(out[D] == 0x5A, "%s: wrote past D", name);
  if (rc == TFDC_OK) {
    if (memcmp(out, expected, D) != 0) rc = 1;
    CHECK(tfdc_decoded_size(f.d, f.n, &n) == TFDC_OK && n == D, "%s: decoded_size", name);
    CHECK(tfdc_decode(f.d, f.n, out, D - 1) == TFDC_ERR_OUTPUT_SIZE, "%s: output one byte short", name);
    if (seed) maybe_write_v2(name, &f);
  }
  free(out);
  free(expected);
  free(f.d);
  return rc;
}

/* Bytes of a float32 vector, little-endian. */
static void f32_bytes(uint8_t *b, const float *v, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) memcpy(b + 4 * i, &v[i], 4); /* the test hosts are little-endian */
}

/* Valid patched files: every elem_bits, codebook and planes, dense and
 * sparse, row- and column-major, the transforms, Huffman and fixed codes,
 * unaligned offsets, adjacent patches, one ending at F, one over vtable
 * bytes the reader does not read. */
static void test_patch_valid(void) {
  static const float scales[8] = {0.5f, 0.25f, 0.125f, 0.0625f, 1.5f, 3.0f, -0.75f, 0.001f};
  static const unsigned ebs[6] = {2, 4, 8, 16, 32, 64};
  uint8_t sc[32], raw[6][4][16], r8[5] = {3, 3, 200, 3, 1}, r16[6] = {0, 0, 0x34, 0x12, 0xff, 0xff};
  uint8_t r2[3] = {0x1b, 0x00, 0xe4}, r4[4] = {0x21, 0x43, 0x65, 0x87}, r32[8] = {0, 0, 0, 0, 0, 0, 0xc0, 0x3f};
  uint8_t r64[16] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0xf0, 0xbf}, f2[8], vt[2] = {0x34, 0x12};
  pspec s = pspec_ok;
  fb_layout lay;
  uint64_t rec_off, base, F;
  bytes fb = patch_inner(&s, &lay, &rec_off);
  ppatch pp[8];
  size_t i, k;
  int rc, planes, sparse;
  F = fb.n;
  base = lay.data_at + 4;
  free(fb.d);
  CHECK(base + s.data_len == F, "the data vector's bytes end the inner flatbuffer");
  f32_bytes(sc, scales, 8);
  memset(pp, 0, sizeof pp);

  /* per-channel scales: one patch of float32 planes */
  pp[0].off = base;
  pp[0].d = (v2desc){sc, 32, 32, 2, 1, 0, 1, 0, 4096, 0};
  rc = patch_status("patch_f32_planes", &s, pp, 1, 1);
  CHECK(rc == TFDC_OK, "float32 planes patch -> %d", rc);

  /* several patches, unaligned, adjacent, the last ending at F */
  {
    const float two[2] = {2.5f, -4.0f};
    f32_bytes(f2, two, 2);
  }
  pp[0].off = base + 1; pp[0].d = (v2desc){r8, 5, 8, 0, 0, 0, 1, 0, 4096, 0};
  pp[1].off = base + 6; pp[1].d = (v2desc){r16, 6, 16, 1, 1, 1, 1, 4, 2, 0};
  pp[2].off = base + 13; pp[2].d = (v2desc){r2, 3, 2, 0, 0, 0, 3, 0, 5, 0};
  pp[3].off = base + 16; pp[3].d = (v2desc){r4, 4, 4, 0, 1, 0, 2, 0, 4096, 1};
  pp[4].off = base + 20; pp[4].d = (v2desc){r32, 8, 32, 2, 0, 1, 1, 2, 4096, 0};
  pp[5].off = base + 28; pp[5].d = (v2desc){r64, 16, 64, 0, 1, 0, 1, 0, 1, 0};
  pp[6].off = base + 44; pp[6].d = (v2desc){sc, 12, 32, 0, 0, 0, 3, 0, 4096, 0};
  pp[7].off = F - 8; pp[7].d = (v2desc){f2, 8, 32, 0, 1, 0, 1, 0, 4096, 1};
  rc = patch_status("patch_several", &s, pp, 8, 1);
  CHECK(rc == TFDC_OK, "eight patches -> %d", rc);

  /* every elem_bits x codebook / planes x dense / sparse, at an odd offset */
  for (i = 0; i < 6; i++)
    for (k = 0; k < 4; k++) {
      char name[64];
      size_t j;
      planes = (int)(k & 1);
      sparse = (int)(k >> 1);
      for (j = 0; j < 16; j++) raw[i][k][j] = (uint8_t)(rnd() % 3 == 0 ? 0 : rnd() & (j % 3 ? 0xff : 0x0f));
      memset(pp, 0, sizeof pp);
      pp[0].off = base + 3;
      pp[0].d = (v2desc){raw[i][k], 16, ebs[i], (unsigned)(k % 3), planes, sparse, 1, 3, 7, (int)(i & 1)};
      snprintf(name, sizeof name, "patch_eb%u_%s_%s", ebs[i], planes ? "planes" : "codebook",
               sparse ? "sparse" : "dense");
      rc = patch_status(name, &s, pp, 1, 0);
      CHECK(rc == TFDC_OK, "%s -> %d", name, rc);
    }

  /* over the u16 after buffer 1's 6-byte vtable, which no reader reads */
  memset(pp, 0, sizeof pp);
  pp[0].off = lay.vt_data + 6;
  pp[0].d = (v2desc){vt, 2, 16, 0, 1, 0, 1, 0, 4096, 0};
  rc = patch_status("patch_unread_vtable_bytes", &s, pp, 1, 0);
  CHECK(rc == TFDC_OK, "a patch over vtable bytes not read -> %d", rc);
}

/* Every MUST of §6.7 (and the flags bit of §4, the list of §5) broken once. */
static void test_patch_rules(void) {
  static const uint8_t one[4] = {1, 0, 0, 0};
  uint8_t sc[8];
  const float two[2] = {1.0f, 2.0f};
  pspec s;
  fb_layout lay;
  uint64_t rec_off, base, F;
  bytes fb;
  ppatch pp[2], p1;
  int rc;
  s = pspec_ok;
  fb = patch_inner(&s, &lay, &rec_off);
  F = fb.n;
  base = lay.data_at + 4;
  free(fb.d);
  f32_bytes(sc, two, 2);
  memset(&p1, 0, sizeof p1);
  p1.off = base;
  p1.d = (v2desc){sc, 8, 32, 0, 1, 0, 1, 0, 4096, 1};
#define PATCH_RULE(want, what, np)                                   \
  do {                                                               \
    rc = patch_status(what, &s, pp, np, 0);                          \
    CHECK(rc == (want), "%s -> %d (want %d)", what, rc, (int)(want)); \
    s = pspec_ok;                                                    \
    pp[0] = pp[1] = p1;                                              \
  } while (0)
  pp[0] = pp[1] = p1;
  PATCH_RULE(TFDC_OK, "unbroken", 1);
  s.flags = 5; /* with bit 0: no kind 3 table needed */
  PATCH_RULE(TFDC_OK, "flags 5", 1);
  s.no_list = 1;
  PATCH_RULE(TFDC_ERR_TRUNCATED, "flags bit 2 set, no patch list", 1);
  s.flags = 0;
  PATCH_RULE(TFDC_ERR_CORRUPT, "a patch list without flags bit 2", 1);
  s.flags = 0;
  s.no_list = 1;
  PATCH_RULE(TFDC_OK, "no list, no bit 2 (a 2.0 file)", 0);

  s.flags = 0;
  s.count_as = 1;
  s.count_value = 0;
  PATCH_RULE(TFDC_ERR_CORRUPT, "num_patches 0 without flags bit 2", 0);
  s.count_as = 1;
  s.count_value = 0;
  PATCH_RULE(TFDC_OK, "num_patches 0", 0);
  pp[0].size_as = 1;
  pp[0].size_as_value = 0;
  PATCH_RULE(TFDC_ERR_CORRUPT, "out_size 0", 1);
  pp[0].d.size = 0; /* N = 0: fields without streams, consistent but for the rule */
  pp[0].d.sparse = 1;
  pp[0].d.G = 2;
  PATCH_RULE(TFDC_ERR_CORRUPT, "an empty patch", 1);
  pp[0].size_as = 1;
  pp[0].size_as_value = 6; /* 48 bits: not a multiple of elem_bits 32 */
  PATCH_RULE(TFDC_ERR_CORRUPT, "out_size 6 for 32-bit elements", 1);
  pp[0].off = F - 8;
  PATCH_RULE(TFDC_OK, "a patch ending at F", 1);
  pp[0].off = F - 7;
  PATCH_RULE(TFDC_ERR_CORRUPT, "a patch ending at F + 1", 1);
  pp[0].off = F;
  PATCH_RULE(TFDC_ERR_CORRUPT, "a patch starting at F", 1);
  {
    /* No record, no table: meta[F] (num_tables) and meta[F + 1] are 0, so
     * a zero patch (sparse, nnz 0: no stream) over [F - 7, F + 1) passes
     * the zero check; only the F bound refuses it. */
    static const uint8_t zeros[8] = {0};
    fb_layout lay0;
    bytes fb0;
    uint64_t F0;
    s.no_record = 1;
    fb0 = patch_inner(&s, &lay0, &rec_off);
    F0 = fb0.n;
    free(fb0.d);
    pp[0].off = F0 - 7;
    pp[0].d = (v2desc){zeros, 8, 8, 0, 0, 1, 1, 2, 4096, 0};
    PATCH_RULE(TFDC_ERR_CORRUPT, "a zero patch over [F - 7, F + 1), meta[F] = 0", 1);
    s.no_record = 1;
    pp[0].off = F0 - 8;
    pp[0].d = (v2desc){zeros, 8, 8, 0, 0, 1, 1, 2, 4096, 0};
    PATCH_RULE(TFDC_OK, "a zero patch over [F - 8, F), no record, no table", 1);
  }
  pp[0].off = UINT64_MAX - 3; /* off + size wraps to 4 */
  PATCH_RULE(TFDC_ERR_CORRUPT, "out_offset + out_size wrapping", 1);
  pp[1].off = base + 8;
  PATCH_RULE(TFDC_OK, "two adjacent patches", 2);
  pp[1].off = base + 7;
  PATCH_RULE(TFDC_ERR_CORRUPT, "two overlapping patches", 2);
  pp[0].off = base + 8;
  pp[1].off = base;
  PATCH_RULE(TFDC_ERR_CORRUPT, "patches in decreasing order", 2);
  pp[1].off = base;
  PATCH_RULE(TFDC_ERR_CORRUPT, "the same range twice", 2);
  s.dirty = 5;
  PATCH_RULE(TFDC_ERR_CORRUPT, "a nonzero meta byte inside the range", 1);
  s.dirty = 7;
  PATCH_RULE(TFDC_ERR_CORRUPT, "a nonzero meta byte at the range's end - 1", 1);
  s.dirty = 8;
  PATCH_RULE(TFDC_OK, "a nonzero meta byte just after the range", 1);
  s.count_as = 2;
  PATCH_RULE(TFDC_ERR_CORRUPT, "num_patches floor((M - F) / 7) + 1", 1);
  s.count_as = 1;
  s.count_value = 2;
  PATCH_RULE(TFDC_ERR_TRUNCATED, "num_patches 2, one patch", 1);
  s.count_as = 1;
  s.count_value = UINT64_MAX;
  PATCH_RULE(TFDC_ERR_CORRUPT, "num_patches 2^64 - 1", 1);
  s.extra_payload = 1;
  PATCH_RULE(TFDC_ERR_CORRUPT, "a payload byte left over", 1);
  s.extra_meta = 1;
  PATCH_RULE(TFDC_ERR_CORRUPT, "a meta byte after the last patch", 1);
  /* patches that change what the inner flatbuffer says (§6.7's re-read) */
  pp[0].off = lay.rec_T + 8;
  pp[0].d = (v2desc){one, 4, 32, 0, 0, 0, 1, 0, 4096, 0};
  PATCH_RULE(TFDC_ERR_CORRUPT, "the high half of a record's Buffer.offset", 1);
  pp[0].off = lay.rec_T + 16;
  pp[0].d = (v2desc){one, 4, 8, 0, 1, 0, 1, 0, 4096, 0};
  PATCH_RULE(TFDC_ERR_CORRUPT, "the high half of a record's Buffer.size", 1);
  {
    static const uint8_t v8[2] = {8, 0}, v4[2] = {4, 0};
    /* data's voffset 8: a uoffset 0 there, an empty vector at T + 8 (data
     * present, not absent) */
    pp[0].off = lay.vt_buf + 4;
    pp[0].d = (v2desc){v8, 2, 16, 0, 0, 0, 1, 0, 4096, 0};
    PATCH_RULE(TFDC_ERR_CORRUPT, "the records' vtable gives them an empty data vector", 1);
    /* data's voffset 4: the offset read as a uoffset points past F */
    pp[0].off = lay.vt_buf + 4;
    pp[0].d = (v2desc){v4, 2, 8, 0, 1, 0, 1, 0, 4096, 0};
    PATCH_RULE(TFDC_ERR_FLATBUFFER, "the records' vtable gives them data past F", 1);
  }
  pp[0].off = lay.buf1_T + 4 + 2; /* + 65536 to buffer 1's data uoffset */
  pp[0].d = (v2desc){one, 1, 8, 0, 0, 0, 1, 0, 4096, 0};
  PATCH_RULE(TFDC_ERR_FLATBUFFER, "buffer 1's data uoffset past F", 1);
  pp[0].off = lay.bufvec + 1; /* + 256 buffers */
  pp[0].d = (v2desc){one, 1, 8, 0, 0, 0, 1, 0, 4096, 0};
  PATCH_RULE(TFDC_ERR_FLATBUFFER, "Model.buffers' count + 256", 1);
#undef PATCH_RULE
}

/* FORMAT.md §6.7's example: its descriptor and payload bytes are what this
 * file's encoder writes, and decode to 1.0, 2.0 at bytes 200 ... 207. */
static void test_patch_format_example(void) {
  static const uint8_t desc[] = {0xc8, 0x01, 0x08, 0x20, 0x00, 0x01, 0x00, 0x01, 0x00, 0x80, 0x20, 0x02,
                                 0x00, 0x80, 0x20, 0x02, 0x00, 0x80, 0x20, 0x02, 0x00, 0x80, 0x20, 0x02};
  static const uint8_t payload[] = {0x3f, 0x40, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00};
  static const uint8_t want[8] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40};
  static const uint8_t table[] = {0x02, 0x08}; /* kind 2, width 8 */
  pspec s = pspec_ok;
  fb_layout lay;
  uint64_t rec_off;
  bytes fb, pdesc = {0}, pay = {0}, meta = {0}, stub = {0}, f;
  v2tabs *ts = (v2tabs *)calloc(1, sizeof(v2tabs));
  v2desc d = {want, 8, 32, 0, 1, 0, 1, 0, 4096, 1};
  uint8_t *out;
  int rc;
  s.no_record = 1;
  s.data_len = 128;
  fb = patch_inner(&s, &lay, &rec_off);
  CHECK(lay.data_at + 4 <= 200 && 208 <= fb.n, "bytes 200 .. 207 are data bytes (%zu, %zu)",
        lay.data_at, fb.n);
  b_varint(&pdesc, 200);
  b_varint(&pdesc, 8);
  v2_write_fields(&pdesc, ts, &pay, &d);
  CHECK(pdesc.n == sizeof desc && memcmp(pdesc.d, desc, sizeof desc) == 0, "§6.7 example: descriptor bytes");
  CHECK(pay.n == sizeof payload && memcmp(pay.d, payload, sizeof payload) == 0, "§6.7 example: payload bytes");
  CHECK(ts->n == 1 && ts->all.n == 2 && memcmp(ts->all.d, table, 2) == 0, "§6.7 example: one table");
  /* the file from the document's bytes, not the encoder's */
  b_put(&meta, fb.d, fb.n);
  b_varint(&meta, 1);
  b_put(&meta, table, sizeof table);
  b_varint(&meta, 0); /* no records */
  b_varint(&meta, 1); /* one patch */
  b_put(&meta, desc, sizeof desc);
  b_put(&stub, k3_stub, sizeof k3_stub);
  stub.d[126] = 3;
  f = v2_join(&stub, 4, meta.d, meta.n, fb.n, fb.n, payload, sizeof payload);
  out = (uint8_t *)malloc(fb.n);
  rc = tfdc_decode(f.d, f.n, out, fb.n);
  CHECK(rc == TFDC_OK, "§6.7 example: decode -> %s", tfdc_strerror(rc));
  if (rc == TFDC_OK) {
    CHECK(memcmp(out + 200, want, 8) == 0, "§6.7 example: bytes 200 .. 207");
    CHECK(memcmp(out, fb.d, 200) == 0 && memcmp(out + 208, fb.d + 208, fb.n - 208) == 0,
          "§6.7 example: the other bytes are the inner flatbuffer's");
    maybe_write_v2("patch_format_example", &f);
  }
  free(out); free(f.d); free(fb.d); free(pdesc.d); free(pay.d); free(meta.d); free(stub.d);
  free(ts->all.d); free(ts);
}

/* Truncations, bit flips and re-signed meta mutations of a small patched
 * file: never a crash, an overrun or an accepted broken file. */
static void test_patch_mutations(void) {
  static const uint8_t r8[6] = {1, 0, 2, 2, 0, 1};
  uint8_t sc[8];
  const float two[2] = {0.5f, -2.0f};
  pspec s = pspec_ok;
  fb_layout lay;
  uint64_t rec_off, D;
  bytes fb, f;
  ppatch pp[2];
  uint8_t *expected;
  s.data_len = 16;
  fb = patch_inner(&s, &lay, &rec_off);
  f32_bytes(sc, two, 2);
  memset(pp, 0, sizeof pp);
  pp[0].off = lay.data_at + 4;
  pp[0].d = (v2desc){sc, 8, 32, 2, 1, 0, 1, 0, 4096, 0};
  pp[1].off = lay.data_at + 13;
  pp[1].d = (v2desc){r8, 3, 2, 0, 0, 1, 1, 4, 4096, 0};
  f = patch_build(&s, pp, 2, &expected, &D);
  test_v2_file("patch_mutations", &f);
  maybe_write_v2("patch_small", &f);
  free(expected); free(f.d); free(fb.d);
}

/* ---- throughput (not a test: `test_decode --bench [N] [REPEATS]`) ------- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Decodes a kind 3 or 4 file of one dense int8 record of N smooth symbols
 * (rows of 1024, lag1 1, lag2 1024: a kernel's neighbours) `reps` times;
 * prints the median time per symbol. */
static void bench_one(const char *name, uint64_t N, uint64_t block, unsigned classes, k4groups *g,
                      int reps) {
  k3config c = {name, 8, 0, N, 1024, 1, 12, classes, 2, 1, 1024, 0, block, 1, 60};
  uint8_t *expected, *out;
  uint64_t D;
  double t[64];
  bytes f;
  int i, rc = TFDC_OK;
  if (g) k4_maps(g);
  f = k3_build(&c, g, g ? &k4_none : &k3_none, &expected, &D);
  out = (uint8_t *)malloc(D);
  if (reps > 64) reps = 64;
  for (i = 0; i < reps; i++) {
    double t0 = now_s();
    rc |= tfdc_decode(f.d, f.n, out, D);
    t[i] = now_s() - t0;
  }
  CHECK(rc == TFDC_OK && memcmp(out, expected, D) == 0, "%s: bench decode", name);
  qsort(t, (size_t)reps, sizeof t[0], cmp_double);
  printf("%-28s N=%llu block=%llu T=%u file=%zu B: median %.2f ms = %.3f ns/symbol (%.0f MB/s); min %.2f ms\n",
         name, (unsigned long long)N, (unsigned long long)block,
         g ? g->Gr * g->Gc * classes : classes, f.n, 1e3 * t[reps / 2], 1e9 * t[reps / 2] / (double)N,
         (double)N / t[reps / 2] / 1e6, 1e3 * t[0]);
  if (g) {
    free(g->col_group);
    free(g->row_group);
  }
  free(out);
  free(expected);
  free(f.d);
}

static void bench(uint64_t N, int reps) {
  k4groups g1 = {1024, 65536, 4, 4, 1, NULL, NULL}, g2 = {1024, 65536, 2, 2, 0, NULL, NULL};
  k4groups g3 = {1, 1, 1, 1, 0, NULL, NULL};
  g1.P = g2.P = (uint32_t)(N / 1024 < 65536 ? N / 1024 : 65536);
  bench_one("kind3 C16 block32768", N, 32768, 16, NULL, reps);
  bench_one("kind3 C16 block262144 (ring)", N, 262144, 16, NULL, reps);
  bench_one("kind4 1x1x16 block32768", N, 32768, 16, &g3, reps);
  bench_one("kind4 2x2x8 block32768", N, 32768, 8, &g2, reps);
  bench_one("kind4 4x4x16 block32768", N, 32768, 16, &g1, reps);
  bench_one("kind4 4x4x16 block262144", N, 262144, 16, &g1, reps);
}

int main(int argc, char **argv) {
  bytes multi;
  uint64_t D;
  static const uint8_t digits[] = "123456789";
  if (argc >= 2 && strcmp(argv[1], "--bench") == 0) {
    bench(argc >= 3 ? strtoull(argv[2], NULL, 10) : 1u << 23, argc >= 4 ? atoi(argv[3]) : 9);
    return failures != 0;
  }
  if (argc == 3 && strcmp(argv[1], "--write") == 0) write_dir = argv[2];
  if (getenv("TFDC_TEST_META_STRIDE")) {
    long k = strtol(getenv("TFDC_TEST_META_STRIDE"), NULL, 10);
    meta_stride = k >= 1 && k <= 1024 ? (uint64_t)k : 1;
  }
  if (argc == 2) test_v2_corpus(argv[1]);
  CHECK(ref_crc32(digits, 9) == 0xCBF43926u, "reference CRC");
  test_worked_example();
  test_configs();
  test_half_codebook();
  test_multi_record(&multi, &D);
  test_padding_bits();
  test_truncation_and_bitflips(&multi, D);
  test_edits_with_fixed_crcs(&multi, D);
  test_k3_configs();
  test_k3_rules();
  test_k3_mutations();
  test_format_examples();
  test_k4_configs();
  test_k4_one_group_is_kind3();
  test_k4_with_k3();
  test_k4_rules();
  test_k4_mutations();
  test_patch_valid();
  test_patch_rules();
  test_patch_format_example();
  test_patch_mutations();
  free(multi.d);
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("all tfdc decoder tests passed\n");
  return 0;
}
