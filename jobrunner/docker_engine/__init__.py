"""``ContainerEngine`` on the Docker engine, through the docker SDK's low-level ``APIClient``.

- :mod:`~jobrunner.docker_engine.engine`: :class:`DockerEngine` and its supervision of a run
  (deadlines, cancellation, output limit, the container's removal);
- :mod:`~jobrunner.docker_engine.image_build`: builds, cached by source digest, inside the
  job's sandbox (deadline, cancel, nothing left behind);
- :mod:`~jobrunner.docker_engine.build_stream`: one build request and what its stream says;
- :mod:`~jobrunner.docker_engine.base_images`: the images a build starts from (present, not
  another scope's, pulled only by Longshore);
- :mod:`~jobrunner.docker_engine.build_cgroup`: the cgroup that carries a build's pids limit;
- :mod:`~jobrunner.docker_engine.output_pump`: the output stream into the event loop;
- :mod:`~jobrunner.docker_engine.artifacts`: reading the artifacts back, or not;
- :mod:`~jobrunner.docker_engine.artifact_holders`: the capped artifacts directories and the
  holder containers that keep them; :mod:`~jobrunner.docker_engine.holder_image` their image;
- :mod:`~jobrunner.docker_engine.orphans`: what dead runs left on the engine;
- :mod:`~jobrunner.docker_engine.sdk`: the blocking SDK calls, how a container is made;
- :mod:`~jobrunner.docker_engine.client`: the clients, and the threads blocking calls use.
"""

from jobrunner.docker_engine.engine import DockerEngine

__all__ = ["DockerEngine"]
