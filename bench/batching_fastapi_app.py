#!/usr/bin/python3
"""The seeds' stack for bench/batching: FastAPI + uvicorn + PyTorch (Debian's
python3-fastapi, python3-uvicorn, python3-torch) serving a TorchScript model over the same
KServe v2 binary-tensor request infera takes (JSON header whose length
Inference-Header-Content-Length gives, then the FP32 input bytes), one request per forward
pass, as such services are usually written.

    MODEL=resnet18.pt SHAPE=3,64,64 /usr/bin/python3 -m uvicorn batching_fastapi_app:app \\
        --app-dir bench --port 8000 --workers 1
"""
import json
import os

import numpy as np
import torch
from fastapi import FastAPI, Request, Response

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
model = torch.jit.load(os.environ["MODEL"]).eval()
shape = [int(d) for d in os.environ["SHAPE"].split(",")]
app = FastAPI()


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request):
    body = await request.body()
    header_len = int(request.headers.get("inference-header-content-length", len(body)))
    header = json.loads(body[:header_len])
    rows = header["inputs"][0]["shape"][0]
    x = torch.from_numpy(np.frombuffer(body[header_len:], dtype=np.float32).copy()).reshape(rows, *shape)
    with torch.inference_mode():
        y = model(x)
    return Response(content=json.dumps({"model_name": name, "outputs": [
        {"name": "logits", "datatype": "FP32", "shape": list(y.shape), "data": y.reshape(-1).tolist()}]}),
        media_type="application/json")
