"""KServe's own client against a running server (run with .venv-kserve's Python by the tests).

Usage: kserve_client.py URL FLIGHTS_JSON. Prints one JSON object: the health and readiness KServe's
client reads, and the predictions and basis it gets back for the flights, sent as JSON tensors.
"""

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

MODEL = "flight-delay"


def tensor(name, values):
    """One input per flight field: text as BYTES, numbers as FP64 (null as NaN) or INT64."""
    if all(isinstance(v, str) for v in values):
        return InferInput(name, [len(values)], "BYTES", data=values)
    if all(isinstance(v, int) for v in values):
        return InferInput(name, [len(values)], "INT64", data=values)
    floats = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    made = InferInput(name, [len(values)], "FP64")
    made.set_data_from_numpy(floats)
    return made


async def main(url, flights):
    """Asks the server as a KServe user would."""
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    try:
        inputs = [tensor(name, [f[name] for f in flights]) for name in flights[0]]
        response = await client.infer(url, InferRequest(MODEL, inputs), model_name=MODEL)
        outputs = {output.name: output.data for output in response.outputs}
        return {
            "live": await client.is_server_live(url),
            "ready": await client.is_server_ready(url),
            "model_ready": await client.is_model_ready(url, MODEL),
            "predict": list(map(float, outputs["predict"])),
            "basis": [b.decode() if isinstance(b, bytes) else b for b in outputs["basis"]],
        }
    finally:
        await client.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))))
