"""Personal data sealed per data subject (crypto-shredding): a data key per subject, wrapped
by the master key; fields marked ``x-personal-data`` sealed with AES-GCM under it; erasure
destroys the key. See docs/privacy.md."""

from interaction_store.privacy.cipher import SealedFieldError, is_sealed, open, seal
from interaction_store.privacy.fields import personal_paths
from interaction_store.privacy.keystore import (
    KeyLookup,
    KeyStore,
    KeyStoreError,
    SubjectErased,
    open_key_store,
)
from interaction_store.privacy.master import MasterKey, MasterKeyError, load_master_key

__all__ = [
    "KeyLookup",
    "KeyStore",
    "KeyStoreError",
    "MasterKey",
    "MasterKeyError",
    "SealedFieldError",
    "SubjectErased",
    "is_sealed",
    "load_master_key",
    "open",
    "open_key_store",
    "personal_paths",
    "seal",
]
