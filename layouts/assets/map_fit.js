/* Fit a wall map to its panel's real pixel size once, after the page's first refresh.
 *
 * The server fits the view for a 1920x1080 panel; a 3840x2160 wall has twice the pixels, so
 * the same zoom would draw the province at half the panel. This is the web Mercator arithmetic
 * of layouts.map.fit_view with the panel's measured size, answered as a Patch of the layout's
 * centre and zoom only: colours, polygons and the operator's later zoom are left alone.
 * Plotly's own map.fitbounds skips choropleth traces, hence this. A file, not an inline
 * script, so that the Content-Security-Policy needs no exception for it.
 *
 * Not at mount: the KPI tiles are still empty then, so the panel is taller than it will be.
 * The flag lives on the graph's element, so a page switch (a new element) fits again.
 */
window.dash_clientside = Object.assign({}, window.dash_clientside, {
    cc_map: {
        fitToPanel: function (_refreshed, box, graphId) {
            const clientside = window.dash_clientside;
            const graph = document.getElementById(graphId);
            if (!box || !graph || graph.dataset.fitted || !graph.clientWidth || !graph.clientHeight) {
                return clientside.no_update;
            }
            graph.dataset.fitted = "1";
            const [minLon, minLat, maxLon, maxLat] = box;
            const mercY = (lat) => Math.log(Math.tan(Math.PI / 4 + (lat * Math.PI) / 180 / 2));
            const lonSpan = Math.max(maxLon - minLon, 1e-6);
            const latSpan = Math.max(((mercY(maxLat) - mercY(minLat)) * 180) / Math.PI, 1e-6);
            const lonZoom = Math.log2((graph.clientWidth * 360) / (512 * lonSpan));
            const latZoom = Math.log2((graph.clientHeight * 360) / (512 * latSpan));
            const zoom = Math.round((Math.min(lonZoom, latZoom) - 0.1) * 100) / 100;
            const centre = { lon: (minLon + maxLon) / 2, lat: (minLat + maxLat) / 2 };
            graph.dataset.fitZoom = String(zoom); // the view this fit asked for (tests wait on it)
            return new clientside.Patch()
                .assign(["layout", "map", "center"], centre)
                .assign(["layout", "map", "zoom"], zoom)
                .build();
        },
    },
});
