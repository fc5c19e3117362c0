"""A Litestar endpoint receiving Herald's status callbacks (`litestar run --app litestar_receiver:app`)."""

import os

from litestar import Litestar, Request, Response, post

from herald_client import InvalidSignature, verify_callback

SECRETS = os.environ["HERALD_CALLBACK_SECRETS"].split(",")  # current first, the previous during a rotation


@post("/herald/callbacks", status_code=204)
async def herald_callback(request: Request) -> Response[None]:
    try:
        event = verify_callback(await request.body(), request.headers.get("herald-signature"), SECRETS)
    except InvalidSignature:
        return Response(None, status_code=401)
    print(event.type, event.message_id)  # dedupe on (message_id, status): delivery is at least once
    return Response(None, status_code=204)


app = Litestar([herald_callback])
