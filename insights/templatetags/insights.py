from django import template

from insights.selectors import duration_text

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    """Seconds as people read them: "12 min", "3 h 20 min" (translated)."""
    return duration_text(seconds)
