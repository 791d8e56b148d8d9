# stressbot: the live bot. Configure with a mounted config file and environment variables
# (REDIS_URL, STRESSBOT_TELEGRAM_TOKEN, FRED_API_KEY, OANDA_API_TOKEN, ...).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY connectors ./connectors
COPY rules ./rules
COPY config.example.toml ./
# Editable install: the shipped rules/ stay beside the package, where stressbot finds them.
RUN pip install -e . \
    && useradd --create-home --uid 10001 stressbot \
    && mkdir -p /home/stressbot/.cache/stressbot \
    && chown -R stressbot /home/stressbot

USER stressbot
# /healthz answers while the process runs ([metrics], on by default on 127.0.0.1:9771; the check
# runs inside the container, so the loopback address works; with [metrics] enabled = false or
# another port, change or drop this). /readyz says whether it can do its job (see README).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9771/healthz', timeout=4)"]
# Mount your config at /etc/stressbot/config.toml (see config.example.toml).
CMD ["stressbot", "run", "--config", "/etc/stressbot/config.toml"]
