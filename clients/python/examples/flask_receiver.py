"""A Flask endpoint receiving Herald's status callbacks (`flask --app flask_receiver run`)."""

import os

from flask import Flask, abort, request

from herald_client import InvalidSignature, verify_callback

SECRETS = os.environ["HERALD_CALLBACK_SECRETS"].split(",")
app = Flask(__name__)


@app.post("/herald/callbacks")
def herald_callback() -> tuple[str, int]:
    try:
        event = verify_callback(request.get_data(), request.headers.get("Herald-Signature"), SECRETS)
    except InvalidSignature:
        abort(401)
    print(event.type, event.message_id)
    return "", 204
