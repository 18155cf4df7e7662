'use strict';
// netcluster for Node.js: the seed's API (2015) on top of the Rust ncserver.
//
//   const netcluster = require('netcluster').pipedclient();
//   netcluster.connect('A', () => netcluster.emit('log', 'TESTE'));

const { NCAgent, NetclusterError } = require('./lib/agent');
const { PipedServer, findNcserver } = require('./lib/server');
const { defaultSocketDir, socketPath } = require('./lib/paths');

/** A new client (an NCAgent); `options` as for `new NCAgent(options)`. */
function pipedclient(options) {
  return new NCAgent(options);
}

/** A local server: set `.config`, then `start()`; see PipedServer. */
function pipedserver(options) {
  return new PipedServer(options);
}

module.exports = {
  pipedclient,
  pipedserver,
  NCAgent,
  PipedServer,
  NetclusterError,
  defaultSocketDir,
  socketPath,
  findNcserver,
  get control() {
    return require('./control');
  },
};
