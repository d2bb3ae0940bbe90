/*
** $Id: lstate.c,v 2.36.1.2 2008/01/03 15:20:39 roberto Exp $
** Global State
** See Copyright Notice in lua.h
*/


#include <stddef.h>

#define lstate_c
#define LUA_CORE

#include "lua.h"

#include "ldebug.h"
#include "ldo.h"
#include "lfunc.h"
#include "lgc.h"
#include "llex.h"
#include "lmem.h"
#include "lstate.h"
#include "lstring.h"
#include "ltable.h"
#include "ltm.h"


#define state_size(x)	(sizeof(x) + LUAI_EXTRASPACE)
#define fromstate(l)	(cast(lu_byte *, (l)) - LUAI_EXTRASPACE)
#define tostate(l)   (cast(lua_State *, cast(lu_byte *, l) + LUAI_EXTRASPACE))


/*
** Main thread combines a thread state and the global state
*/
typedef struct LG {
  lua_State l;
  global_State g;
} LG;
  


static void stack_init (lua_State *L1, lua_State *L) {
  /* initialize CallInfo array */
  L1->base_ci = luaM_newvector(L, BASIC_CI_SIZE, CallInfo);
  L1->ci = L1->base_ci;
  L1->size_ci = BASIC_CI_SIZE;
  L1->end_ci = L1->base_ci + L1->size_ci - 1;
  /* initialize stack array */
  L1->stack = luaM_newvector(L, BASIC_STACK_SIZE + EXTRA_STACK, TValue);
  L1->stacksize = BASIC_STACK_SIZE + EXTRA_STACK;
  L1->top = L1->stack;
  L1->stack_last = L1->stack+(L1->stacksize - EXTRA_STACK)-1;
  /* initialize first ci */
  L1->ci->func = L1->top;
  setnilvalue(L1->top++);  /* `function' entry for this `ci' */
  L1->base = L1->ci->base = L1->top;
  L1->ci->top = L1->top + LUA_MINSTACK;
}


static void freestack (lua_State *L, lua_State *L1) {
  luaM_freearray(L, L1->base_ci, L1->size_ci, CallInfo);
  luaM_freearray(L, L1->stack, L1->stacksize, TValue);
}


/*
** open parts that may cause memory-allocation errors
*/
static void f_luaopen (lua_State *L, void *ud) {
  global_State *g = G(L);
  UNUSED(ud);
  stack_init(L, L);  /* init stack */
  sethvalue(L, gt(L), luaH_new(L, 0, 2));  /* table of globals */
  sethvalue(L, registry(L), luaH_new(L, 0, 2));  /* registry */
  luaS_resize(L, MINSTRTABSIZE);  /* initial size of string table */
  luaT_init(L);
  luaX_init(L);
  luaS_fix(luaS_newliteral(L, MEMERRMSG));
  g->GCthreshold = 4*g->totalbytes;
}


static void preinit_state (lua_State *L, global_State *g) {
  G(L) = g;
  L->stack = NULL;
  L->stacksize = 0;
  L->errorJmp = NULL;
  L->hook = NULL;
  L->hookmask = 0;
  L->basehookcount = 0;
  L->allowhook = 1;
  resethookcount(L);
  L->openupval = NULL;
  L->size_ci = 0;
  L->nCcalls = L->baseCcalls = 0;
  L->status = 0;
  L->base_ci = L->ci = NULL;
  L->savedpc = NULL;
  L->errfunc = 0;
  setnilvalue(gt(L));
}


static void close_state (lua_State *L) {
  global_State *g = G(L);
  luaF_close(L, L->stack);  /* close all upvalues for this thread */
  luaC_freeall(L);  /* collect all objects */
  lua_assert(g->rootgc == obj2gco(L));
  lua_assert(g->strt.nuse == 0);
  luaM_freearray(L, G(L)->strt.hash, G(L)->strt.size, TString *);
  luaZ_freebuffer(L, &g->buff);
  freestack(L, L);
  lua_assert(g->totalbytes == sizeof(LG));
  (*g->frealloc)(g->ud, fromstate(L), state_size(LG), 0);
}


lua_State *luaE_newthread (lua_State *L) {
  lua_State *L1 = tostate(luaM_malloc(L, state_size(lua_State)));
  luaC_link(L, obj2gco(L1), LUA_TTHREAD);
  preinit_state(L1, G(L));
  stack_init(L1, L);  /* init stack */
  setobj2n(L, gt(L1), gt(L));  /* share table of globals */
  L1->hookmask = L->hookmask;
  L1->basehookcount = L->basehookcount;
  L1->hook = L->hook;
  resethookcount(L1);
  lua_assert(iswhite(obj2gco(L1)));
  return L1;
}


void luaE_freethread (lua_State *L, lua_State *L1) {
  luaF_close(L1, L1->stack);  /* close all upvalues for this thread */
  lua_assert(L1->openupval == NULL);
  luai_userstatefree(L1);
  freestack(L, L1);
  luaM_freemem(L, fromstate(L1), state_size(lua_State));
}


LUA_API lua_State *lua_newstate (lua_Alloc f, void *ud) {
  int i;
  lua_State *L;
  global_State *g;
  void *l = (*f)(ud, NULL, 0, state_size(LG));
  if (l == NULL) return NULL;
  L = tostate(l);
  g = &((LG *)L)->g;
  L->next = NULL;
  L->tt = LUA_TTHREAD;
  g->currentwhite = bit2mask(WHITE0BIT, FIXEDBIT);
  L->marked = luaC_white(g);
  set2bits(L->marked, FIXEDBIT, SFIXEDBIT);
  preinit_state(L, g);
  g->frealloc = f;
  g->ud = ud;
  g->mainthread = L;
  g->uvhead.u.l.prev = &g->uvhead;
  g->uvhead.u.l.next = &g->uvhead;
  g->GCthreshold = 0;  /* mark it as unfinished state */
  g->strt.size = 0;
  g->strt.nuse = 0;
  g->strt.hash = NULL;
  setnilvalue(registry(L));
  luaZ_initbuffer(L, &g->buff);
  g->panic = NULL;
  g->gcstate = GCSpause;
  g->rootgc = obj2gco(L);
  g->sweepstrgc = 0;
  g->sweepgc = &g->rootgc;
  g->gray = NULL;
  g->grayagain = NULL;
  g->weak = NULL;
  g->tmudata = NULL;
  g->totalbytes = sizeof(LG);
  g->gcpause = LUAI_GCPAUSE;
  g->gcstepmul = LUAI_GCMUL;
  g->gcdept = 0;
  g->synod_charging = 0;  /* synod: charging starts off */
  g->synod_nextid = 0;
  g->synod_cost = 0;
  g->synod_skipped = 0;
  g->synod_room = 0;
  for (i=0; i<NUM_TAGS; i++) g->mt[i] = NULL;
  if (luaD_rawrunprotected(L, f_luaopen, NULL) != 0) {
    /* memory allocation error: free partial state */
    close_state(L);
    L = NULL;
  }
  else
    luai_userstateopen(L);
  return L;
}


static void callallgcTM (lua_State *L, void *ud) {
  UNUSED(ud);
  luaC_callGCTM(L);  /* call GC metamethods for all udata */
}


LUA_API void lua_close (lua_State *L) {
  L = G(L)->mainthread;  /* only the main thread can be closed */
  lua_lock(L);
  luaF_close(L, L->stack);  /* close all upvalues for this thread */
  luaC_separateudata(L, 1);  /* separate udata that have GC metamethods */
  L->errfunc = 0;  /* no error function during GC metamethods */
  do {  /* repeat until no more errors */
    L->ci = L->base_ci;
    L->base = L->top = L->ci->base;
    L->nCcalls = L->baseCcalls = 0;
  } while (luaD_rawrunprotected(L, callallgcTM, NULL) != 0);
  lua_assert(G(L)->tmudata == NULL);
  luai_userstateclose(L);
  close_state(L);
}



/* synod: cost accounting (declared in lua.h). */

LUA_API void lua_synod_enable (lua_State *L, size_t room) {
  G(L)->synod_charging = 1;
  G(L)->synod_room = room;
}


LUA_API void lua_synod_set_room (lua_State *L, size_t room) {
  G(L)->synod_room = room;
}


LUA_API size_t lua_synod_take_cost (lua_State *L) {
  size_t cost = G(L)->synod_cost;
  G(L)->synod_cost = 0;
  return cost;
}


LUA_API size_t lua_synod_take_skipped (lua_State *L) {
  size_t skipped = G(L)->synod_skipped;
  G(L)->synod_skipped = 0;
  return skipped;
}


/*
** Adds `units' to the cost and makes the count hook fire before the next
** instruction of `L', so the embedder sees the cost at once: the
** instructions of the current window that are skipped that way are
** counted apart, so the hook can charge the window's true length
** (basehookcount - skipped): a window cut short after k instructions
** counts k + 1 (the instruction that runs the hook ends the window).
*/
/* synod: the creation numbers (ltable.c) sit in padding: on x86-64 the
   objects keep the sizes they had, so a script's memory use, which the
   embedder limits, is what it was before them */
#if defined(__x86_64__)
typedef char synod_object_sizes_unchanged[(sizeof(Table) == 64 &&
    sizeof(CClosure) == 56 && sizeof(LClosure) == 48 &&
    sizeof(Udata) == 40) ? 1 : -1];
#endif

LUA_API void synod_charge (lua_State *L, size_t units) {
  global_State *g = G(L);
  if (!g->synod_charging || units == 0) return;
  g->synod_cost = (g->synod_cost + units < g->synod_cost)
                  ? ~(size_t)0 : g->synod_cost + units;
  /* not from inside a hook (the embedder's hook may make strings): the
     window it would cut is the one the hook has just begun. Only once the
     cost waiting is large (SYNOD_CUT_UNITS): small charges (a short
     string) wait for the window's natural end, at most that many
     instructions later, instead of calling the hook at every one */
  if ((L->hookmask & LUA_MASKCOUNT) && L->allowhook && L->hookcount > 1 &&
      g->synod_cost >= SYNOD_CUT_UNITS) {
    g->synod_skipped += (size_t)(L->hookcount - 1);
    L->hookcount = 1;
  }
}


/*
** Adds `units' to the cost without cutting the count hook's window: the
** hook sees it at the window's end, at most a window of instructions
** later. For the charges of a call's arguments and results: there the
** stack may hold up to LUAI_MAXCSTACK values, and a hook run at the next
** instruction could not get the stack it needs (mlua's raises "stack
** overflow").
*/
void synod_charge_deferred (lua_State *L, size_t units) {
  global_State *g = G(L);
  if (!g->synod_charging || units == 0) return;
  g->synod_cost = (g->synod_cost + units < g->synod_cost)
                  ? ~(size_t)0 : g->synod_cost + units;
}


/*
** synod_charge, then an error once the cost passes the room the embedder
** left (what remains of its budget): for C loops whose length no memory
** limit bounds. Only where a C function may raise an error.
*/
LUA_API void synod_charge_check (lua_State *L, size_t units) {
  global_State *g = G(L);
  if (!g->synod_charging) return;
  synod_charge(L, units);
  if (g->synod_cost > g->synod_room)
    luaG_runerror(L, "script stopped");
}
