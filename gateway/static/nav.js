// The console's pages, as data: adding a page is adding a row here and a module under pages/.
//
// A row: { route, label, roles, page, nav }
//   route  the hash path after "#/", with ":name" parts for parameters ("campaigns/:id")
//   label  the key of the page's name in the message catalogues (i18n/en.json, fr.json)
//   roles  who may open it (gateway/auth.py ROLES); others get "not allowed" and no nav entry.
//          The API checks permissions again on every request: this only hides what would fail.
//   permission  optional: also needed in GET /v1/me's permissions (tenants.operate: the installation's
//          operators only, whatever their role in their own tenant).
//   page   the module (relative to /static/) whose `render(container, ctx, params)` draws the page and may
//          return a function called when the page is left (close streams, timers); "builtin:NAME" names a
//          page registered by app.js (the live board, which predates the router).
//   nav    false: reachable by link only (details, forms), no entry in the navigation bar.
// The first row a user may open is their home page. More specific routes come before general ones.
export const ALL = ["admin", "supervisor", "uploader", "auditor"];
const WATCHERS = ["admin", "supervisor", "auditor"];
const WRITERS = ["admin", "supervisor"];
const AUDITORS = ["admin", "auditor"]; // audit.read, users.read, webhooks.read (auditors read, admins change)

export const NAV = [
  { route: "live", label: "nav.live", roles: WATCHERS, page: "builtin:board" },
  { route: "campaigns", label: "nav.campaigns", roles: ALL, page: "./pages/campaigns.js" },
  { route: "campaigns/new", label: "nav.campaign_new", roles: WRITERS, page: "./pages/campaign-form.js", nav: false },
  { route: "campaigns/:id/edit", label: "nav.campaign_edit", roles: WRITERS, page: "./pages/campaign-form.js",
    nav: false },
  { route: "campaigns/:id", label: "nav.campaign", roles: WATCHERS, page: "./pages/campaign-live.js", nav: false },
  { route: "lists", label: "nav.lists", roles: ALL, page: "./pages/lists.js" },
  { route: "compliance", label: "nav.compliance", roles: WATCHERS, page: "./pages/compliance.js" },
  { route: "audit", label: "nav.audit", roles: AUDITORS, page: "./pages/audit.js" },
  { route: "users", label: "nav.users", roles: AUDITORS, page: "./pages/users.js" },
  { route: "webhooks", label: "nav.webhooks", roles: AUDITORS, page: "./pages/webhooks.js" },
  { route: "operator", label: "nav.operator", roles: ["admin"], permission: "tenants.operate",
    page: "./pages/operator.js" },
  { route: "preferences", label: "nav.preferences", roles: ALL, page: "./pages/preferences.js" },
];
