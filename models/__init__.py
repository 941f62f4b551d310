"""The teacher: one async chat interface over a managed llama-server, a URL, or in-process."""

from models.factory import TeacherSettings, default_teacher_gguf, describe, open_teacher
from models.teacher import (
    ChatMessage,
    Completion,
    ReplyError,
    Teacher,
    TeacherError,
    TeacherUnavailable,
    chat_json,
)

__all__ = [
    "ChatMessage", "Completion", "ReplyError", "Teacher", "TeacherError", "TeacherSettings",
    "TeacherUnavailable", "chat_json", "default_teacher_gguf", "describe", "open_teacher",
]
