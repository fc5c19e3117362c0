"""The API's service layer: what each request does, in domain values.

Controllers translate HTTP (schemas in, schemas out, problems) and call these; these call the
database and the broker. Nothing here imports the HTTP layer (`import-linter` contract), so each
operation is the same whoever calls it.
"""
