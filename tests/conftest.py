from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TOPICS = {
    "volcanoes.md": "# Volcanoes\n\nA volcano is an opening in the crust of a planet through which "
    "molten rock, ash and gases escape. Mount Etna in Sicily rises about 3,357 metres and is one of "
    "the most active volcanoes in the world. Shield volcanoes such as Mauna Loa in Hawaii are built "
    "from fluid basalt lava flows, while stratovolcanoes like Mount Fuji are built from layers of "
    "lava and ash. The 1815 eruption of Mount Tambora in Indonesia caused the year without a summer "
    "in 1816, when crops failed across Europe and North America.\n",
    "bees.txt": "Honey bees live in colonies of 20,000 to 80,000 workers with a single queen. Worker "
    "bees perform a waggle dance to tell other foragers the direction and distance of flowers. A "
    "worker bee lives about six weeks in summer, while the queen can live three to five years. "
    "Bees make honey by evaporating nectar until its water content falls below about 18 percent. "
    "Drones are male bees whose only task is to mate with a queen from another colony.\n",
    "railways.html": "<html><head><title>Early railways</title><script>var x=1;</script></head>"
    "<body><nav>Home | Prev | Next</nav><h1>Early railways</h1><p>The Stockton and Darlington "
    "Railway opened in 1825 and was the first public railway to use steam locomotives. George "
    "Stephenson built its engine, <em>Locomotion No. 1</em>. In 1830 the Liverpool and Manchester "
    "Railway became the first intercity line, running only scheduled steam trains.</p><p>The "
    "standard gauge of 1,435 millimetres, chosen by Stephenson, is used by about 55 percent of "
    "the world's railways today.</p><footer>Copyright</footer></body></html>",
    "coffee.md": "# Coffee\n\nCoffee plants grow best at altitudes between 1,000 and 2,000 metres in "
    "the tropics. The two main species are Arabica, which makes up about 60 percent of world "
    "production, and Robusta, which has roughly twice as much caffeine. Beans are roasted at "
    "temperatures around 200 degrees Celsius, which triggers the Maillard reaction and gives "
    "coffee its brown colour. Brazil has been the largest producer of coffee for over 150 years.\n",
}


def write_corpus(root: Path, topics: dict[str, str] = TOPICS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in topics.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")


@pytest.fixture(scope="session")
def embedder():
    from retrieval import Embedder

    return Embedder()


@pytest.fixture(scope="module")
def topic_index(tmp_path_factory, embedder):
    """The TOPICS corpus indexed (real embedder, FAISS), once per module: for tests that run a
    skill's flow on one item directly."""
    from retrieval import CorpusIndex

    root = tmp_path_factory.mktemp("topics")
    return CorpusIndex.build_or_load(write_corpus(root / "corpus"), root / "index", embedder)


@pytest.fixture(scope="session")
def server_binary() -> Path:
    """The real llama-server, built once into the user cache (a cold CI run compiles it here)."""
    from models.server_build import ensure_binary

    return ensure_binary("llama-server", cuda=False, args=[])  # plain, whatever CMAKE_ARGS says


@pytest.fixture(scope="session")
def teacher_gguf() -> Path:
    from models import default_teacher_gguf

    return default_teacher_gguf()


@pytest.fixture(scope="module")
def live_server(server_binary, teacher_gguf, tmp_path_factory):
    """One real llama-server (embedded GGUF) for a whole test module, reached by URL: tests that
    start many runs (every skill, the kill-and-resume harness) would pay minutes in server starts."""
    from models.llama_server import ManagedServer, ServerSettings, free_port

    log = tmp_path_factory.mktemp("server") / "llama-server.log"
    settings = ServerSettings(model_path=teacher_gguf, binary=server_binary, parallel=2,
                              ctx_per_slot=4096, port=free_port(), log_path=log)
    cmd = ManagedServer(settings).command()
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{settings.port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.5)
    yield url, teacher_gguf.name
    proc.terminate()
    proc.wait(timeout=30)
