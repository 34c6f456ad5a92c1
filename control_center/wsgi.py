"""What gunicorn imports (``control_center.wsgi:server``)."""

from control_center.app import create_app
from control_center.settings import get_settings

app = create_app(get_settings())
server = app.server
