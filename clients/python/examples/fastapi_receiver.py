"""A FastAPI endpoint receiving Herald's status callbacks (`uvicorn fastapi_receiver:app`)."""

import os

from fastapi import FastAPI, HTTPException, Request, Response

from herald_client import InvalidSignature, verify_callback

SECRETS = os.environ["HERALD_CALLBACK_SECRETS"].split(",")
app = FastAPI()


@app.post("/herald/callbacks", status_code=204)
async def herald_callback(request: Request) -> Response:
    try:
        # The raw body: a re-serialised JSON would not match the signature.
        event = verify_callback(await request.body(), request.headers.get("herald-signature"), SECRETS)
    except InvalidSignature as exc:
        raise HTTPException(status_code=401) from exc
    print(event.type, event.message_id)
    return Response(status_code=204)
