/* sigv4.c: what SigV4 needs from drover beside libcurl's CURLOPT_AWS_SIGV4 (libcurl 7.88 neither
 * adds x-amz-content-sha256 nor canonicalises the query): payload hashes, the encoding of paths
 * and query values, canonical multipart queries; and the little XML S3 answers with. */
#include "artifacts/s3_int.h"

int s3_digest_fd(EVP_MD_CTX *c, int fd, uint64_t off, uint64_t n)
{
        unsigned char buf[65536];
        while (n > 0) {
                ssize_t k =
                    DRV_RETRY(pread(fd, buf, n < sizeof(buf) ? n : sizeof(buf), (off_t)off));
                if (k <= 0)
                        return k < 0 ? -errno : -EIO;
                EVP_DigestUpdate(c, buf, (size_t)k);
                off += (uint64_t)k;
                n -= (uint64_t)k;
        }
        return 0;
}

int s3_sha256_fd(int fd, uint64_t off, uint64_t n, char out[65])
{
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        unsigned char md[32];
        unsigned mdl = 0;
        if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL)) {
                EVP_MD_CTX_free(c);
                return -ENOMEM;
        }
        int r = s3_digest_fd(c, fd, off, n);
        EVP_DigestFinal_ex(c, md, &mdl);
        EVP_MD_CTX_free(c);
        drv_hex(md, 32, out);
        return r;
}

void s3_sha256_mem(const void *p, size_t n, char out[65])
{
        unsigned char md[32];
        unsigned mdl = 32;
        EVP_Digest(p, n, md, &mdl, EVP_sha256(), NULL);
        drv_hex(md, 32, out);
}

int s3_uri_encode(struct strbuf *sb, const char *s, bool keep_slash)
{
        int r = 0;
        for (; *s && r == 0; s++) {
                unsigned char c = (unsigned char)*s;
                if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/'))
                        r = strbuf_putc(sb, (char)c);
                else
                        r = strbuf_printf(sb, "%%%02X", c);
        }
        return r;
}

char *s3_xml_take(const char **p, const char *end, const char *tag)
{
        char open[64], close[64];
        snprintf(open, sizeof(open), "<%s>", tag);
        snprintf(close, sizeof(close), "</%s>", tag);
        const char *a = memmem(*p, (size_t)(end - *p), open, strlen(open));
        if (!a)
                return NULL;
        a += strlen(open);
        const char *b = memmem(a, (size_t)(end - a), close, strlen(close));
        if (!b)
                return NULL;
        *p = b + strlen(close);
        struct strbuf sb = STRBUF_INIT;
        strbuf_grow(&sb, (size_t)(b - a) + 1);
        for (const char *q = a; q < b; q++) {
                static const char *const ent[][2] = {{"&amp;", "&"},
                                                     {"&lt;", "<"},
                                                     {"&gt;", ">"},
                                                     {"&quot;", "\""},
                                                     {"&apos;", "'"}};
                size_t i = 0;
                for (; *q == '&' && i < DRV_ARRAY_SIZE(ent); i++)
                        if ((size_t)(b - q) >= strlen(ent[i][0]) &&
                            memcmp(q, ent[i][0], strlen(ent[i][0])) == 0)
                                break;
                if (*q == '&' && i < DRV_ARRAY_SIZE(ent)) {
                        strbuf_puts(&sb, ent[i][1]);
                        q += strlen(ent[i][0]) - 1;
                } else {
                        strbuf_putc(&sb, *q);
                }
        }
        return sb.buf ? strbuf_detach(&sb) : strdup("");
}

char *s3_upload_query(const char *upload_id, unsigned part)
{
        struct strbuf q = STRBUF_INIT;
        int r = part ? strbuf_printf(&q, "partNumber=%u&", part) : 0;
        r = r ?: strbuf_puts(&q, "uploadId=");
        r = r ?: s3_uri_encode(&q, upload_id, false);
        if (r < 0) {
                strbuf_release(&q);
                return NULL;
        }
        return strbuf_detach(&q);
}

char *s3_xml_code(const char *body, size_t len)
{
        const char *p = body ? body : "";
        return s3_xml_take(&p, p + (body ? len : 0), "Code");
}
