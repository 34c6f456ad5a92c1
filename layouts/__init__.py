"""The operations wall (Dash pages and their builders).

Pages, all served by :func:`control_center.app.create_app`:

- ``/``: the province wall: commune map coloured by a chosen measure, KPI tiles, the communes
  to watch, open escalations, feed health, and a stale-data banner;
- ``/commune/<5-digit code>``: one commune's figures, daily flow, overdue dossiers, queue waits
  by hour, feed health and recent alerts;
- ``/kiosk?rotate=30``: no navigation; rotates between the wall and the worst communes;
- with ``CC_SCOPE=national``, ``/`` is the country's wall (:mod:`layouts.national`: provinces
  map, the country's figures, provinces and communes to watch) and ``/?province=08`` that
  province's wall (:mod:`layouts.scope`).

Every page takes ``?lang=en`` (Vietnamese is the default). Labels live in :mod:`layouts.i18n`,
component ids in :mod:`layouts.ids`; builders are plain functions of the read queries'
results (:mod:`control_center.queries`), and each page refreshes from one ``dcc.Interval``
(``CC_WALL_REFRESH_S``).
"""
