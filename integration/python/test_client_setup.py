"""How the official client finds the emulator."""

from __future__ import annotations

import os

from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery


def test_client_reaches_the_emulator_through_bigquery_emulator_host(emulator, dataset):
    # No api_endpoint: the client must take the base URL from BIGQUERY_EMULATOR_HOST alone.
    plain = bigquery.Client(project=dataset.project, credentials=AnonymousCredentials())

    assert os.environ["BIGQUERY_EMULATOR_HOST"] == emulator.base_url
    assert plain._connection.API_BASE_URL == emulator.base_url
    assert dataset.dataset_id in [d.dataset_id for d in plain.list_datasets()]
