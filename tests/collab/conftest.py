from tests.messaging.conftest import temp_agent

__all__ = ["temp_agent"]
