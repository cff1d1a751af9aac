/* s3_int.h: what the files of the S3 client share (internal to artifacts/s3*.c and sigv4.c).
 * sigv4.c: payload hashes, SigV4 encoding, the XML of answers; s3_request.c: one request (struct
 * xfer) from set-up to verdict, retries, many at a time over one curl multi handle;
 * s3_multipart.c: multipart uploads (of a file, and streamed from a pipe); s3.c: the public API. */
#pragma once

#include "artifacts/s3.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <pthread.h>

#define S3_MAX_BODY_KEEP (16u << 20) /* bytes of a response body kept in memory */
#define S3_EMPTY_SHA256  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define S3_MAX_PARALLEL  32 /* easy handles (and kept-alive connections) of a store */

struct s3 {
        char *name; /* s3://bucket/prefix */
        char *bucket;
        char *prefix; /* "" or "dir/" */
        char *base;   /* scheme://host[:port]/bucket (path style) or scheme://bucket.host */
        char *region;
        char *sigv4; /* aws:amz:REGION:s3 */
        char *access_key, *secret_key, *token_hdr;
        char *ca_pem;
        CURLM *multi;
        CURL *easy[S3_MAX_PARALLEL];
        unsigned attempts; /* per request */
        unsigned backoff_ms;
        unsigned parallel;  /* requests in flight for many small objects */
        unsigned list_page; /* max-keys of a listing page (0: the server's) */
        uint64_t part_size;
        long low_speed_time;
};

/* ---- sigv4.c ---- */
/* Add n bytes of fd from off to the digest c. */
int s3_digest_fd(EVP_MD_CTX *c, int fd, uint64_t off, uint64_t n);
/* SHA-256 (hex) of n bytes of fd from off / of memory. */
int s3_sha256_fd(int fd, uint64_t off, uint64_t n, char out[65]);
void s3_sha256_mem(const void *p, size_t n, char out[65]);
/* Percent-encode as SigV4 wants: unreserved characters kept, '/' kept when keep_slash. */
int s3_uri_encode(struct strbuf *sb, const char *s, bool keep_slash);
/* "uploadId=ID" or "partNumber=N&uploadId=ID" (part 0: none), canonical. Caller frees. */
char *s3_upload_query(const char *upload_id, unsigned part);
/* Text of <tag>...</tag> at or after *p (XML entities decoded); advances *p. NULL if absent. */
char *s3_xml_take(const char **p, const char *end, const char *tag);
/* The <Code> of an error answer (or NULL). */
char *s3_xml_code(const char *body, size_t len);

/* ---- s3_request.c ---- */
struct xfer {
        /* request */
        const char *method; /* GET HEAD PUT POST DELETE */
        char *url;
        char *what;              /* "PUT key" for messages */
        struct curl_slist *hdrs; /* set by the caller */
        struct curl_slist *sent; /* hdrs + the ones added per attempt */
        char payload_sha[65];
        int body_fd; /* -1: body from body_mem */
        uint64_t body_off, body_len, body_pos;
        const char *body_mem;
        /* called once when the request first starts (to read and hash its body late); -errno */
        int (*prepare)(struct xfer *x, const void *arg);
        const void *prep_arg;
        /* response */
        int out_fd; /* -1: body to resp */
        uint64_t out_base, out_pos;
        EVP_MD_CTX *out_md;
        bool stream; /* out_fd is a pipe: a retry resumes with a Range, hashes go on */
        EVP_MD_CTX *etag_all, *etag_part; /* streamed: md5 of the parts for a multipart ETag */
        uint64_t etag_psz, etag_in_part, etag_nparts;
        bool etag_checked;
        struct strbuf resp, resp_hdrs;
        long status;
        CURLcode cc;
        char curl_msg[CURL_ERROR_SIZE];
        unsigned attempt;
        uint64_t not_before_ns;
        int result; /* 0 ok, <0 failed for good, 1 to retry */
        bool done;
};

/* The one way a request is made: method on key (NULL: the bucket) with a canonical query (or
 * NULL); no body (payload hash of nothing) until s3_xfer_body_* gives it one. -ENOMEM. */
int s3_xfer_init(struct s3 *s, struct xfer *x, const char *method, const char *key,
                 const char *query);
/* The body is n bytes of memory / len bytes of fd from off (pread); both hash it. */
void s3_xfer_body_mem(struct xfer *x, const void *p, size_t n);
int s3_xfer_body_fd(struct xfer *x, int fd, uint64_t off, uint64_t len);
/* Add a request header "fmt" with one %s. -ENOMEM. */
int s3_xfer_header(struct xfer *x, const char *fmt, const char *v);
void s3_xfer_release(struct xfer *x);
/* Value of response header name (case-insensitive), malloc'd, or NULL. */
char *s3_resp_header(const struct xfer *x, const char *name);
/* Run n transfers, at most par at a time over the shared connections, each retried on its own;
 * returns the first failure (after it no new one starts when stop_on_error). */
int s3_run_xfers(struct s3 *s, struct xfer **xs, size_t n, unsigned par, bool stop_on_error,
                 struct drv_error *err);
int s3_run_one(struct s3 *s, struct xfer *x, struct drv_error *err);
/* A pipe with a thread at one end: fn(arg) runs on a new thread; *mine is the caller's end (the
 * write end when to_thread, else the read end), *theirs the thread's. */
int s3_pipe_thread(struct s3 *s, bool to_thread, void *(*fn)(void *), void *arg, pthread_t *th,
                   int *mine, int *theirs, struct drv_error *err);

/* ---- s3_multipart.c ---- */
/* Upload size bytes of fd as a multipart upload, parts in parallel; aborted on failure. */
int s3_multipart_fd(struct s3 *s, const char *key, int fd, uint64_t size, const char *content_type,
                    struct drv_error *err);
