"""Names relied upon by users, scripts and acceptance checks (see DESIGN.md). Change nothing lightly."""

from typing import Final

GROUP: Final = "mtls.dev"
VERSION: Final = "v1alpha1"
KIND: Final = "MTLSIdentity"
PLURAL: Final = "mtlsidentities"
SHORT_NAME: Final = "mtlsid"

MANAGER_NAME: Final = "mtls-operator"

# Pod opt-in label: the operator's server-side watch selector and the webhook's objectSelector.
INJECT_LABEL: Final = "mtls.dev/inject"
INJECT_VALUE: Final = "true"

# Pod annotation naming the pod's Secret (set by the injection webhook, or by hand).
SECRET_NAME_ANNOTATION: Final = "mtls.dev/secret-name"

# Labels on every pod Secret.
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
IDENTITY_LABEL: Final = "mtls.dev/identity"
POD_LABEL: Final = "mtls.dev/pod"

# Annotations on every pod Secret: the state a restart re-derives everything from.
SPIFFE_ID_ANNOTATION: Final = "mtls.dev/spiffe-id"
SERIAL_ANNOTATION: Final = "mtls.dev/serial"
NOT_AFTER_ANNOTATION: Final = "mtls.dev/not-after"
RENEW_AT_ANNOTATION: Final = "mtls.dev/renew-at"
CA_FINGERPRINT_ANNOTATION: Final = "mtls.dev/ca-fingerprint"
SPEC_HASH_ANNOTATION: Final = "mtls.dev/spec-hash"
# The SHA-256 of the trust bundle written to ``ca.crt`` with it: what a metadata-only look at the Secret
# (a restart, the CA rotation's count) compares with the current bundle, without reading any data.
BUNDLE_HASH_ANNOTATION: Final = "mtls.dev/ca-bundle-hash"
# Set beside ``mtls.dev/renew-at`` by ``kubectl mtls renew`` (value ``manual``): the re-issue it triggers
# is counted and reported with that reason; the operator removes it when it re-issues.
RENEW_REASON_ANNOTATION: Final = "mtls.dev/renew-reason"

# Secret keys (kubernetes.io/tls plus the trust bundle).
TLS_CRT: Final = "tls.crt"
TLS_KEY: Final = "tls.key"
CA_CRT: Final = "ca.crt"
SECRET_TYPE_TLS: Final = "kubernetes.io/tls"

# CA and trust bundle.
DEFAULT_CA_SECRET: Final = "mtls-operator-ca"
# The admission webhooks' own CA (signs only their serving certificates; never in a trust bundle).
DEFAULT_WEBHOOK_CA_SECRET: Final = "mtls-operator-webhook-ca"
TRUST_BUNDLE_CONFIGMAP: Final = "mtls-trust-bundle"

# Kubernetes limits.
MAX_SECRET_NAME_LENGTH: Final = 253

# Pod injection by the mutating admission webhook: the Secret volume it adds, where every container
# mounts it, and the pod annotation that moves the mount.
IDENTITY_VOLUME: Final = "mtls-identity"
DEFAULT_MOUNT_PATH: Final = "/var/run/secrets/mtls.dev"
MOUNT_PATH_ANNOTATION: Final = "mtls.dev/mount-path"

# Admission webhooks: kopf handler ids, which are also the URL paths the configurations call, and the
# webhook names inside the Mutating/ValidatingWebhookConfigurations (the Helm chart uses these).
INJECT_HANDLER_ID: Final = "inject-pod"
VALIDATE_HANDLER_ID: Final = "validate-identity"
INJECT_WEBHOOK_NAME: Final = "inject.mtls.dev"
IDENTITIES_WEBHOOK_NAME: Final = "identities.mtls.dev"

# PKCS#12 keystores (spec.keystores.pkcs12): the Secret keys, and the annotation that records what
# they were written from (a digest of chain, bundle, profile and password), so a pass re-writes them
# exactly when one of those changed.
KEYSTORE_P12: Final = "keystore.p12"
TRUSTSTORE_P12: Final = "truststore.p12"
KEYSTORE_ANNOTATION: Final = "mtls.dev/keystore-digest"
