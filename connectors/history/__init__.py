"""History: the downloader and its sources, the replay file reader and first-start backfill."""
