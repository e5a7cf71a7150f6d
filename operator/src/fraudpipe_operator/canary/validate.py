"""The candidate artifact checked before it gets any traffic: it can be pulled, its bytes
match the digest it is named by (`pull_model` verifies every layer), its inputs are exactly
the features the scorer computes, and it passes the check every scorer runs when it loads a
model (`inference.open_session`): ONNX Runtime loads the graph, the graph's signature fits,
and it gives one finite score in [0, 1] for each probe row (`model_probe`). So a candidate
that a scorer would refuse, or that scores NaN, is refused here, before Loading.

Only what is wrong with the artifact itself refuses it (digest mismatch, a truncated or
corrupt graph, incompatible inputs, NaN or out-of-range scores, not a fraudpipe model, not
found); a registry that cannot be asked now (unreachable, timeouts, 5xx, 429, credentials)
says nothing about the candidate, so the check is tried again later (`CannotCheckYet`)."""

from __future__ import annotations

import asyncio

import httpx

from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_common.inference import open_session
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
        # The card first: a model for other features is refused without parsing its graph.
        check_compatible(artifact.card, FEATURE_NAMES)
        # ONNX Runtime parses and runs the graph for a moment: off the event loop.
        await asyncio.to_thread(open_session, artifact)
    except RegistryUnreachableError as error:
        raise CannotCheckYet(str(error)) from error
    except RegistryStatusError as error:
        if error.status in CONTENT_STATUSES:
            return str(error)
        raise CannotCheckYet(str(error)) from error
    except (OciError, ValueError) as error:
        # Digest mismatch, a malformed reference, a model card or layers that are wrong,
        # inputs the scorer does not compute, a graph that does not load or fails the probe
        # (ModelArtifactError is a ValueError).
        return str(error)
    except (OSError, httpx.HTTPError) as error:
        raise CannotCheckYet(f"cannot pull {ref}: {error}") from error
    return None
