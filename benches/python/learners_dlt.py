"""The learners collection loaded by a dlt pipeline with its defaults, as a
user would set one up from a mongodump file: documents decoded by pymongo,
handed to dlt, which infers the schema, normalizes nested lists into child
tables and loads PostgreSQL its own way.

    python learners_dlt.py DUMP/learners.bson postgresql://…/db

Not part of CI.
"""

import sys

import bson
import dlt
from urllib.parse import urlsplit, urlunsplit


def credentials(url):
    """dlt insists on a password even where the server trusts the client."""
    u = urlsplit(url.replace("postgres://", "postgresql://", 1))
    if u.password is None:
        u = u._replace(netloc=f"{u.username or 'postgres'}:unused@{u.hostname}:{u.port or 5432}")
    return urlunsplit(u)


def main(path, url):
    @dlt.resource(name="learners", write_disposition="append")
    def learners():
        with open(path, "rb") as f:
            for doc in bson.decode_file_iter(f):
                doc["_id"] = str(doc["_id"])
                yield doc

    pipeline = dlt.pipeline(
        pipeline_name="finlit_bench",
        destination=dlt.destinations.postgres(credentials=credentials(url)),
        dataset_name="dlt_learners",
    )
    info = pipeline.run(learners())
    print(info.loads_ids)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
