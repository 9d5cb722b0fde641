"""wlbridge as an os-ken / Ryu application: ``wlbridge run`` (os-ken) or ``ryu-manager
wlbridge_app`` (Ryu 4.34) load this module by name.

The app is `wlbridge.app.framework.WlBridgeApp` (framework glue, in the app layer, under the
import contracts of .importlinter) around `wlbridge.app.shell.Shell`.  It is declared here
again because both frameworks load the apps a module *defines* (a class whose module is the
one named), not the ones it imports.
"""

from wlbridge.app import framework


class WlBridgeApp(framework.WlBridgeApp):
    """Programs one OVS bridge so guests share the Wi-Fi station's MAC."""
