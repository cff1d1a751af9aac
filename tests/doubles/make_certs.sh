#!/usr/bin/env bash
# make_certs.sh DIR: test PKI for the control-plane double: CA, server cert (IP:127.0.0.1),
# client cert (clientAuth), a client cert from another CA (for "bad certificate refused"), and
# the certificate of an https:// proxy (IP:127.0.0.1) from its own CA, proxy-ca.
set -euo pipefail
d=$1
mkdir -p "$d"
cd "$d"
ossl() { openssl "$@" 2>/dev/null; }
for ca in ca other-ca proxy-ca; do
        ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $ca-key.pem \
                -out $ca.pem -days 2 -subj "/CN=drover test $ca"
done
ext_srv="subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
ext_cli="extendedKeyUsage=clientAuth"
mk() { # name ca ext
        ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1-key.pem" \
                -out "$1.csr" -subj "/CN=$1"
        ossl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2-key.pem" -CAcreateserial \
                -out "$1.pem" -days 2 -extfile <(printf '%s\n' "$3")
        rm -f "$1.csr"
}
mk server ca "$ext_srv"
mk client ca "$ext_cli"
mk badclient other-ca "$ext_cli"
mk proxy proxy-ca "$ext_srv"
