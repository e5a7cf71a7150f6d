"""The candidate artifact checked before it gets any traffic: it can be pulled, its bytes
match the digest it is named by (`pull_model` verifies every layer), and its inputs are
exactly the features the scorer computes. The scorer checks the ONNX graph itself when it
loads the model; a candidate that passes here and fails there never finishes Loading.

Only what is wrong with the artifact itself refuses it (digest mismatch, incompatible
inputs, not a fraudpipe model, not found); a registry that cannot be asked now (unreachable,
timeouts, 5xx, 429, credentials) says nothing about the candidate, so the check is tried
again later (`CannotCheckYet`)."""

from __future__ import annotations

import httpx

from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_common.model_artifact import check_compatible, pull_model
from fraudpipe_common.oci import OciError, RegistryStatusError, RegistryUnreachableError

# Answers that describe the artifact (it is not there, or the name is malformed), not the
# registry's state: the candidate is refused. Every other status is retried.
CONTENT_STATUSES = frozenset({400, 404})


class CannotCheckYet(Exception):
    """The registry could not be asked now: try the same candidate again later."""


async def candidate_problem(ref: str, *, plain_http: bool) -> str | None:
    """None when the candidate may be rolled out, else what is wrong with it. Raises
    `CannotCheckYet` when the registry cannot tell now."""
    try:
        artifact = await pull_model(ref, plain_http=plain_http or None)
        check_compatible(artifact.card, FEATURE_NAMES)
    except RegistryUnreachableError as error:
        raise CannotCheckYet(str(error)) from error
    except RegistryStatusError as error:
        if error.status in CONTENT_STATUSES:
            return str(error)
        raise CannotCheckYet(str(error)) from error
    except (OciError, ValueError) as error:
        # Digest mismatch, a malformed reference, a model card or layers that are wrong,
        # inputs the scorer does not compute (ModelArtifactError is a ValueError).
        return str(error)
    except (OSError, httpx.HTTPError) as error:
        raise CannotCheckYet(f"cannot pull {ref}: {error}") from error
    return None
